//! Exact parsing of Kubernetes resource quantities (`500m`, `1.5`, `4Gi`, `2G`, `1e3`, `128974848`).
//!
//! A quantity is `<sign><digits>[.<digits>]<suffix>` where the suffix is a binary SI unit (`Ki`..`Ei`), a decimal SI
//! unit (`n`, `u`, `m`, none, `k`, `M`..`E`) or a decimal exponent (`e3`, `E-2`). The value is kept as an exact
//! rational `mantissa * 10^exp10 * 2^exp2` and converted to integer units rounding up, the way Kubernetes'
//! `Quantity.Value()` / `MilliValue()` do, so `0.1m` of cpu is 1 millicore and `1.5Gi` is exactly 1610612736 bytes.

use std::fmt;

/// A parse or conversion failure; the message names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("invalid quantity {input:?}: {reason}")]
    Invalid { input: String, reason: &'static str },
    #[error("quantity {input:?} is negative; resource amounts must be >= 0")]
    Negative { input: String },
    #[error("quantity {input:?} is too large (more than {max} {unit})")]
    TooLarge { input: String, max: u64, unit: &'static str },
}

/// An exactly parsed quantity. Only the parser constructs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

/// The largest number of significant digits accepted; Kubernetes itself caps precision well below this.
const MAX_DIGITS: usize = 36;

impl Quantity {
    /// Parses a quantity string exactly as Kubernetes' `resource.ParseQuantity` accepts it.
    pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
        let invalid = |reason| QuantityError::Invalid { input: input.to_string(), reason };
        let s = input.trim();
        if s.is_empty() {
            return Err(invalid("empty string"));
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut negative = false;
        if bytes[0] == b'+' || bytes[0] == b'-' {
            negative = bytes[0] == b'-';
            i = 1;
        }
        let mut mantissa: u128 = 0;
        let mut digits = 0usize;
        let mut exp10: i32 = 0;
        let mut seen_digit = false;
        let mut in_fraction = false;
        while i < bytes.len() {
            let c = bytes[i];
            if c.is_ascii_digit() {
                seen_digit = true;
                // Leading zeros carry no precision; they do not count towards the digit limit.
                if mantissa != 0 || c != b'0' {
                    digits += 1;
                    if digits > MAX_DIGITS {
                        return Err(invalid("too many significant digits"));
                    }
                }
                mantissa = mantissa * 10 + u128::from(c - b'0');
                if in_fraction {
                    exp10 -= 1;
                }
            } else if c == b'.' && !in_fraction {
                in_fraction = true;
            } else {
                break;
            }
            i += 1;
        }
        if !seen_digit {
            return Err(invalid("expected a number"));
        }
        let suffix = &s[i..];
        let mut exp2 = 0u32;
        match suffix {
            "" => {}
            "Ki" => exp2 = 10,
            "Mi" => exp2 = 20,
            "Gi" => exp2 = 30,
            "Ti" => exp2 = 40,
            "Pi" => exp2 = 50,
            "Ei" => exp2 = 60,
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            _ if suffix.starts_with(['e', 'E']) => {
                let exponent = &suffix[1..];
                let valid = {
                    let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
                    !digits.is_empty() && digits.len() <= 4 && digits.bytes().all(|b| b.is_ascii_digit())
                };
                if !valid {
                    return Err(invalid("malformed decimal exponent"));
                }
                let e: i32 = exponent.parse().map_err(|_| invalid("malformed decimal exponent"))?;
                exp10 += e;
            }
            _ => return Err(invalid("unknown suffix (expected one of n u m k M G T P E Ki Mi Gi Ti Pi Ei or e<exp>)")),
        }
        Ok(Quantity { negative: negative && mantissa != 0, mantissa, exp10, exp2 })
    }

    /// The value in units of `10^-scale` (scale 3 gives milli-units), rounded up, as a non-negative integer.
    pub fn to_scaled(&self, scale: i32, input: &str, unit: &'static str) -> Result<u64, QuantityError> {
        if self.negative {
            return Err(QuantityError::Negative { input: input.to_string() });
        }
        let too_large = || QuantityError::TooLarge { input: input.to_string(), max: u64::MAX, unit };
        if self.mantissa == 0 {
            return Ok(0);
        }
        // value * 10^scale = mantissa * 2^exp2 * 10^(exp10 + scale)
        let mut numerator = self.mantissa;
        for _ in 0..self.exp2 {
            numerator = numerator.checked_mul(2).ok_or_else(too_large)?;
        }
        let e = self.exp10 + scale;
        let value = if e >= 0 {
            for _ in 0..e {
                numerator = numerator.checked_mul(10).ok_or_else(too_large)?;
            }
            numerator
        } else {
            let mut denominator: u128 = 1;
            for _ in 0..(-e) {
                match denominator.checked_mul(10) {
                    Some(d) => denominator = d,
                    // The denominator outgrew any possible numerator: the value is a positive fraction below 1.
                    None => return Ok(1),
                }
            }
            numerator.div_ceil(denominator)
        };
        u64::try_from(value).map_err(|_| too_large())
    }
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

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}e{}*2^{}", if self.negative { "-" } else { "" }, self.mantissa, self.exp10, self.exp2)
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
    }

    #[test]
    fn rejects_garbage_naming_the_input() {
        for bad in ["", "abc", "1.2.3", "4GiB", "1e", "1ee3", "--1", "1 Gi", "m", "1e99999", "0x10", "1,5"] {
            let err = parse_amount(bad, Unit::Whole).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "error for {bad:?} must name it: {err}");
        }
        assert!(matches!(parse_amount("-1", Unit::Milli), Err(QuantityError::Negative { .. })));
        assert!(matches!(parse_amount("100Ei", Unit::Whole), Err(QuantityError::TooLarge { .. })));
        assert!(matches!(parse_amount("1e30", Unit::Whole), Err(QuantityError::TooLarge { .. })));
        assert!(matches!(
            parse_amount("1234567890123456789012345678901234567", Unit::Whole),
            Err(QuantityError::Invalid { .. })
        ));
    }

    #[test]
    fn formats_round_trip() {
        for (amount, unit) in [(1500, Unit::Milli), (4000, Unit::Milli), (4 << 30, Unit::Whole), (1000, Unit::Whole)] {
            assert_eq!(parse_amount(&format_amount(amount, unit), unit).unwrap(), amount);
        }
        assert_eq!(format_amount(5 << 30, Unit::Whole), "5Gi");
        assert_eq!(format_amount(250, Unit::Milli), "250m");
    }

    proptest::proptest! {
        #[test]
        fn integer_strings_parse_to_themselves(n in 0u64..u64::MAX) {
            proptest::prop_assert_eq!(whole(&n.to_string()), n);
        }

        #[test]
        fn binary_suffixes_multiply_exactly(n in 0u64..1_000_000, s in 0usize..5) {
            let (suffix, shift) = [("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40), ("Pi", 50)][s];
            let expected = (n as u128) << shift;
            match parse_amount(&format!("{n}{suffix}"), Unit::Whole) {
                Ok(v) => proptest::prop_assert_eq!(v as u128, expected),
                Err(_) => proptest::prop_assert!(expected > u64::MAX as u128),
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,24}") {
            let _ = parse_amount(&s, Unit::Milli);
        }
    }
}
