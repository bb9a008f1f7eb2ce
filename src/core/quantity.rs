//! Exact parsing of Kubernetes resource quantities (`500m`, `1.5`, `4Gi`, `2G`, `1e3`, `128974848`).
//!
//! A quantity is `<sign><digits>[.<digits>]<suffix>` where the suffix is a binary SI unit (`Ki`..`Ei`), a decimal SI
//! unit (`n`, `u`, `m`, none, `k`, `M`..`E`) or a decimal exponent (`e3`, `E-2`). Like apimachinery's
//! `ParseQuantity`, the value is kept rounded up to a whole number of nano-units, and converted to integer units
//! rounding up like `Quantity.Value()` / `MilliValue()`: `0.1m` of cpu is 1 millicore, `1.5Gi` is 1610612736 bytes.
//!
//! `tests/quantity_vectors.rs` checks every input of apimachinery v0.35.4's quantity tests, and our own edge cases,
//! against what that version answers. muster agrees on every value Kubernetes computes correctly and returns an
//! error instead where Kubernetes would silently compute a different number than the quantity says:
//! - negative amounts (resource amounts are never negative);
//! - more than `i64::MAX` units: `Value()`/`MilliValue()` overflow int64, and `Ei`/`Pi` values are capped at 2^63-1;
//! - a nonzero quantity whose decimal exponent (less the fraction digits) is below -(2^31-1): Kubernetes truncates
//!   exponents to 32 bits;
//! - a number without digits (`m`, `.`, `-`, `Ki`): Kubernetes reads some of these as 0 and rejects others.

use std::fmt;

/// A parse or conversion failure; the message names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("invalid quantity {input:?}: {reason}")]
    Invalid { input: String, reason: &'static str },
    #[error("quantity {input:?} is negative; resource amounts must be >= 0")]
    Negative { input: String },
    #[error("quantity {input:?} is too large (more than {max} {unit}, the most Kubernetes represents)")]
    TooLarge { input: String, max: u64, unit: &'static str },
}

/// An exactly parsed quantity. Only the parser constructs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    /// The magnitude in nano-units, rounded up as `ParseQuantity` does; `None` past `u128`, far beyond any amount.
    nanos: Option<u128>,
}

/// The largest amount in any unit: Kubernetes' quantities are int64.
const MAX_AMOUNT: u64 = i64::MAX as u64;

/// Decimal exponents below this (after the fraction digits) are misread by Kubernetes, which keeps them in 32 bits.
const MIN_EXPONENT: i128 = -(i32::MAX as i128);

impl Quantity {
    /// Parses a quantity string as the API server's JSON decoder does, refusing a number without digits or with an
    /// exponent Kubernetes misreads (see the module docs). Negative and huge values are refused by `to_scaled`.
    pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
        let invalid = |reason| QuantityError::Invalid { input: input.to_string(), reason };
        // Surrounding whitespace is trimmed as in Quantity.UnmarshalJSON (ParseQuantity alone rejects it).
        let s = input.trim();
        if s.is_empty() {
            return Err(invalid("empty string"));
        }
        let (negative, s) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (whole, s) = s.split_at(s.bytes().take_while(u8::is_ascii_digit).count());
        let (fraction, suffix) = match s.strip_prefix('.') {
            Some(s) => s.split_at(s.bytes().take_while(u8::is_ascii_digit).count()),
            None => ("", s),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid("no digits (expected a number such as 2, 0.5 or 250m)"));
        }
        let (exp10, exp2): (i64, u32) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            _ if suffix.starts_with(['e', 'E']) => {
                let exponent = &suffix[1..];
                let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid("malformed decimal exponent (expected e.g. e3 or E-2)"));
                }
                (exponent.parse().map_err(|_| invalid("decimal exponent out of range"))?, 0)
            }
            _ => return Err(invalid("unknown suffix (expected one of n u m k M G T P E Ki Mi Gi Ti Pi Ei or e<exp>)")),
        };
        let digits = Digits(whole, fraction);
        if digits.is_zero() {
            return Ok(Quantity { negative: false, nanos: Some(0) });
        }
        let exponent = i128::from(exp10) - fraction.len() as i128;
        if !negative && exponent < MIN_EXPONENT {
            return Err(invalid("decimal exponent out of range"));
        }
        Ok(Quantity { negative, nanos: ceil_scaled(digits, exp2, exponent + 9) })
    }

    /// The value in units of `10^-scale` (scale 3 gives milli-units), rounded up, as a non-negative integer.
    pub fn to_scaled(&self, scale: i32, input: &str, unit: &'static str) -> Result<u64, QuantityError> {
        if self.negative {
            return Err(QuantityError::Negative { input: input.to_string() });
        }
        let too_large = || QuantityError::TooLarge { input: input.to_string(), max: MAX_AMOUNT, unit };
        let nanos = self.nanos.ok_or_else(too_large)?;
        let value = if scale <= 9 {
            match u32::try_from(9 - i64::from(scale)).ok().and_then(|e| 10u128.checked_pow(e)) {
                Some(divisor) => nanos.div_ceil(divisor),
                None => u128::from(nanos != 0),
            }
        } else {
            10u128.checked_pow((scale - 9) as u32).and_then(|m| nanos.checked_mul(m)).ok_or_else(too_large)?
        };
        u64::try_from(value).ok().filter(|&v| v <= MAX_AMOUNT).ok_or_else(too_large)
    }
}

/// The digits of `<whole>.<fraction>`, read as one integer `D` (the point is accounted for in the exponent).
#[derive(Clone, Copy)]
struct Digits<'a>(&'a str, &'a str);

impl Digits<'_> {
    /// The significant digits of `D`, as values 0-9.
    fn significant(self) -> impl Iterator<Item = u8> {
        self.0.bytes().chain(self.1.bytes()).skip_while(|&b| b == b'0').map(|b| b - b'0')
    }

    fn is_zero(self) -> bool {
        self.significant().all(|d| d == 0)
    }
}

/// `ceil(D * 2^exp2 * 10^exp10)` for a nonzero `D`, or `None` if that does not fit in a `u128`.
fn ceil_scaled(digits: Digits, exp2: u32, exp10: i128) -> Option<u128> {
    if digits.significant().count() <= 38
        && let Some(n) = digits.significant().fold(0u128, |n, d| n * 10 + u128::from(d)).checked_mul(1 << exp2)
    {
        return if exp10 >= 0 {
            10u128.checked_pow(u32::try_from(exp10).ok()?).and_then(|m| n.checked_mul(m))
        } else {
            // n < 2^128 < 10^39, so past 10^-39 the value is a positive fraction under 1.
            match u32::try_from(-exp10).ok().and_then(|e| 10u128.checked_pow(e)) {
                Some(divisor) => Some(n.div_ceil(divisor)),
                None => Some(1),
            }
        };
    }
    ceil_scaled_long(digits, exp2, exp10)
}

/// `ceil_scaled` for any number of digits (the API server accepts any): multiplies them by `2^exp2` one by one,
/// then reads off the integer part and whether a nonzero fraction remains.
fn ceil_scaled_long(digits: Digits, exp2: u32, exp10: i128) -> Option<u128> {
    let mut product: Vec<u8> = digits.significant().collect();
    let mut carry = 0u128;
    for d in product.iter_mut().rev() {
        let t = u128::from(*d) * (1 << exp2) + carry;
        *d = (t % 10) as u8;
        carry = t / 10;
    }
    while carry > 0 {
        product.insert(0, (carry % 10) as u8);
        carry /= 10;
    }
    // `product` has a nonzero leading digit; `whole` of its digits are left of the decimal point.
    let whole = product.len() as i128 + exp10;
    if whole <= 0 {
        return Some(1);
    }
    if whole > 39 {
        return None;
    }
    let whole = whole as usize;
    let mut n = 0u128;
    for i in 0..whole {
        n = n.checked_mul(10)?.checked_add(u128::from(product.get(i).copied().unwrap_or(0)))?;
    }
    let fraction = product.get(whole..).unwrap_or_default();
    if fraction.iter().any(|&d| d != 0) { n.checked_add(1) } else { Some(n) }
}

/// How a resource's quantities convert to the integers the core stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// cpu: stored in millicores.
    Milli,
    /// everything else (bytes, counts): stored in whole units.
    Whole,
}

impl Unit {
    pub fn for_resource(name: &str) -> Unit {
        if name == "cpu" { Unit::Milli } else { Unit::Whole }
    }

    fn scale(self) -> i32 {
        match self {
            Unit::Milli => 3,
            Unit::Whole => 0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Milli => "milli-units",
            Unit::Whole => "units",
        }
    }
}

/// Parses `input` and converts it to the stored integer for a resource measured in `unit`.
pub fn parse_amount(input: &str, unit: Unit) -> Result<u64, QuantityError> {
    Quantity::parse(input)?.to_scaled(unit.scale(), input, unit.name())
}

/// Formats a stored amount back into a short, exact Kubernetes quantity (`1500m`, `4Gi`, `3`).
pub fn format_amount(amount: u64, unit: Unit) -> String {
    match unit {
        Unit::Milli if amount.is_multiple_of(1000) => (amount / 1000).to_string(),
        Unit::Milli => format!("{amount}m"),
        Unit::Whole => {
            for (suffix, shift) in [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
                if amount != 0 && amount.is_multiple_of(1u64 << shift) {
                    return format!("{}{suffix}", amount >> shift);
                }
            }
            amount.to_string()
        }
    }
}

/// The value as a decimal number of whole units, to nano precision (`1.5`, `-0.000000001`).
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.negative { "-" } else { "" };
        match self.nanos {
            None => write!(f, "{sign}(more than {}n)", u128::MAX),
            Some(n) if n % 1_000_000_000 == 0 => write!(f, "{sign}{}", n / 1_000_000_000),
            Some(n) => {
                let fraction = format!("{:09}", n % 1_000_000_000);
                write!(f, "{sign}{}.{}", n / 1_000_000_000, fraction.trim_end_matches('0'))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn milli(s: &str) -> u64 {
        parse_amount(s, Unit::Milli).unwrap()
    }
    fn whole(s: &str) -> u64 {
        parse_amount(s, Unit::Whole).unwrap()
    }

    #[test]
    fn parses_the_forms_kubernetes_accepts() {
        assert_eq!(milli("500m"), 500);
        assert_eq!(milli("1.5"), 1500);
        assert_eq!(milli("2"), 2000);
        assert_eq!(milli(".5"), 500);
        assert_eq!(milli("1."), 1000);
        assert_eq!(milli("+3"), 3000);
        assert_eq!(whole("4Gi"), 4 << 30);
        assert_eq!(whole("1.5Gi"), 1_610_612_736);
        assert_eq!(whole("2G"), 2_000_000_000);
        assert_eq!(whole("1e3"), 1000);
        assert_eq!(whole("1E3"), 1000);
        assert_eq!(whole("1e00003"), 1000);
        assert_eq!(whole("1E"), 1_000_000_000_000_000_000);
        assert_eq!(whole("128974848"), 128_974_848);
        assert_eq!(whole("129e6"), 129_000_000);
        assert_eq!(whole("123Mi"), 123 * (1 << 20));
        assert_eq!(whole("1k"), 1000);
        assert_eq!(whole("5e-1"), 1, "fractions round up like Quantity.Value()");
        assert_eq!(milli("100n"), 1, "sub-millicore cpu rounds up to 1m like MilliValue()");
        assert_eq!(milli("0"), 0);
        assert_eq!(milli("-0"), 0);
        assert_eq!(whole("0.000Gi"), 0);
        assert_eq!(whole("0e99999999999"), 0);
        assert_eq!(whole(" 7Gi\n"), 7 << 30, "surrounding whitespace is trimmed like the API server's JSON decoder");
        assert_eq!(whole("1.1Ki"), 1127);
        assert_eq!(milli("1.0000000000000000000000000000000000000001"), 1001, "rounded up to nano first, then up");
        assert_eq!(milli(&format!("0.{}1", "0".repeat(500))), 1);
        assert_eq!(whole(&format!("1.{}", "9".repeat(500))), 2);
        assert_eq!(whole("9223372036854775807"), i64::MAX as u64);
        assert_eq!(milli("9223372036854775.807"), i64::MAX as u64);
        assert_eq!(whole("1e-2147483647"), 1, "a tiny positive amount is at least 1");
    }

    #[test]
    fn rejects_garbage_naming_the_input() {
        for bad in ["", "  ", "abc", "1.2.3", "4GiB", "1e", "1ee3", "--1", "1 Gi", "m", ".", "-", "Ki", "0x10", "1,5"] {
            let err = parse_amount(bad, Unit::Whole).unwrap_err();
            assert!(matches!(err, QuantityError::Invalid { .. }), "{bad:?}: {err}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "error for {bad:?} must name it: {err}");
        }
        assert!(matches!(parse_amount("-1", Unit::Milli), Err(QuantityError::Negative { .. })));
        assert!(matches!(parse_amount("-1e-99999999999", Unit::Milli), Err(QuantityError::Negative { .. })));
        for huge in ["100Ei", "8Ei", "1e30", "1e99999", "1e4294967296", "9223372036854775808", "18446744073709551615"] {
            let err = parse_amount(huge, Unit::Whole).unwrap_err();
            assert!(matches!(err, QuantityError::TooLarge { max, .. } if max == i64::MAX as u64), "{huge:?}: {err}");
        }
        assert!(matches!(parse_amount("9223372036854775807", Unit::Milli), Err(QuantityError::TooLarge { .. })));
        // Kubernetes reads this as 10^0 = 1 (exponent truncated to 32 bits).
        let err = parse_amount("1e-4294967296", Unit::Whole).unwrap_err();
        assert_eq!(err.to_string(), "invalid quantity \"1e-4294967296\": decimal exponent out of range");
        assert!(parse_amount("1e99999999999999999999", Unit::Whole).is_err());
    }

    #[test]
    fn formats_round_trip() {
        for (amount, unit) in [(1500, Unit::Milli), (4000, Unit::Milli), (4 << 30, Unit::Whole), (1000, Unit::Whole)] {
            assert_eq!(parse_amount(&format_amount(amount, unit), unit).unwrap(), amount);
        }
        assert_eq!(format_amount(5 << 30, Unit::Whole), "5Gi");
        assert_eq!(format_amount(250, Unit::Milli), "250m");
    }

    #[test]
    fn displays_the_nano_rounded_value() {
        let shown = |s: &str| Quantity::parse(s).unwrap().to_string();
        assert_eq!(shown("1.5Gi"), "1610612736");
        assert_eq!(shown("-0.1n"), "-0.000000001");
        assert_eq!(shown("250m"), "0.25");
        assert_eq!(shown("1e40"), "(more than 340282366920938463463374607431768211455n)");
    }

    proptest::proptest! {
        #[test]
        fn integer_strings_parse_to_themselves(n in 0u64..=u64::MAX) {
            match parse_amount(&n.to_string(), Unit::Whole) {
                Ok(v) => proptest::prop_assert_eq!(v, n),
                Err(e) => {
                    proptest::prop_assert!(n > i64::MAX as u64);
                    proptest::prop_assert!(matches!(e, QuantityError::TooLarge { .. }), "{}", e);
                }
            }
        }

        #[test]
        fn binary_suffixes_multiply_exactly(n in 0u64..1_000_000, s in 0usize..6) {
            let (suffix, shift) = [("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40), ("Pi", 50), ("Ei", 60)][s];
            let expected = (n as u128) << shift;
            match parse_amount(&format!("{n}{suffix}"), Unit::Whole) {
                Ok(v) => proptest::prop_assert_eq!(v as u128, expected),
                Err(_) => proptest::prop_assert!(expected > i64::MAX as u128),
            }
        }

        #[test]
        fn long_and_short_arithmetic_agree(
            whole in "0{0,3}[1-9][0-9]{0,30}", fraction in "[0-9]{0,10}", exp2 in 0u32..7, exp10 in -50i128..50
        ) {
            let digits = Digits(whole.trim_start_matches('0'), &fraction);
            let exp2 = exp2 * 10;
            proptest::prop_assert_eq!(ceil_scaled(digits, exp2, exp10), ceil_scaled_long(digits, exp2, exp10));
        }

        #[test]
        fn format_round_trips(amount in 0u64..=i64::MAX as u64, milli in proptest::bool::ANY) {
            let unit = if milli { Unit::Milli } else { Unit::Whole };
            proptest::prop_assert_eq!(parse_amount(&format_amount(amount, unit), unit), Ok(amount));
        }

        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,24}") {
            let _ = parse_amount(&s, Unit::Milli);
        }
    }
}
