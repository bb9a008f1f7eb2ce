//! muster's quantity parser against apimachinery v0.35.4, row by row.
//!
//! `fixtures/quantity/apimachinery-v0.35.4.tsv` holds every input apimachinery's own quantity tests parse plus our
//! edge cases, with what `ParseQuantity` / `Quantity.UnmarshalJSON` answer and the exact value of the input;
//! `apimachinery-v0.35.4-format.tsv` holds what `ParseQuantity` makes of `format_amount`'s output. Both come from the
//! Go program in `fixtures/quantity/gen/` (see the fixtures' headers), so these tests need no Go.
//!
//! The contract (`src/core/quantity.rs`): `parse_amount(s, Unit::Whole)` is `Value()` and `Unit::Milli` is
//! `MilliValue()` wherever those are the quantity's value rounded up; where Kubernetes computes another number
//! (negative, int64 overflow, a capped `Ei`, a 32-bit exponent) or reads a number without digits, muster returns
//! an error; whatever Kubernetes rejects, muster rejects.

use std::collections::{BTreeMap, BTreeSet};

use muster::core::quantity::{QuantityError, Unit, format_amount, parse_amount};

const VECTORS: &str = include_str!("fixtures/quantity/apimachinery-v0.35.4.tsv");
const FORMATTED: &str = include_str!("fixtures/quantity/apimachinery-v0.35.4-format.tsv");

const UNITS: [(Unit, &str); 2] = [(Unit::Whole, "whole"), (Unit::Milli, "milli")];

/// Undoes the fixtures' escaping: `\\` is a backslash, `\u{HEX}` any other character.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('\\') {
            out.push('\\');
            rest = r;
        } else {
            let r = rest.strip_prefix("u{").expect("escape is \\\\ or \\u{HEX}");
            let end = r.find('}').expect("\\u{ is closed");
            let code = u32::from_str_radix(&r[..end], 16).expect("hex code point");
            out.push(char::from_u32(code).expect("valid code point"));
            rest = &r[end + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// The data rows of a fixture, split into columns; the column line must be `header`.
fn rows<'a>(text: &'a str, header: &str) -> Vec<Vec<&'a str>> {
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    assert_eq!(lines.next(), Some(header), "fixture columns changed: regenerate and update this test");
    let width = header.split('\t').count();
    lines
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), width, "malformed fixture row {l:?}");
            cols
        })
        .collect()
}

/// The exact value of an input in one unit, rounded up, as the generator computed it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Exact {
    Amount(u128),
    Negative,
    Huge,
}

#[derive(Debug)]
struct Vector<'a> {
    source: &'a str,
    input: String,
    parse_ok: bool,
    json_ok: bool,
    canonical: &'a str,
    /// `Value()` and `MilliValue()`, in `UNITS` order; `None` where UnmarshalJSON failed.
    kubernetes: [Option<i64>; 2],
    exact: [Option<Exact>; 2],
}

fn vectors() -> Vec<Vector<'static>> {
    let header = "source\tinput\tparse\tjson\tcanonical\tvalue\tmilli\texact_value\texact_milli";
    let int = |s: &str| (s != "-").then(|| s.parse::<i64>().expect("integer"));
    let exact = |s: &str| match s {
        "-" => None,
        "negative" => Some(Exact::Negative),
        "huge" => Some(Exact::Huge),
        n => Some(Exact::Amount(n.parse().expect("exact amount"))),
    };
    rows(VECTORS, header)
        .into_iter()
        .map(|c| Vector {
            source: c[0],
            input: unescape(c[1]),
            parse_ok: c[2] == "ok",
            json_ok: c[3] == "ok",
            canonical: c[4],
            kubernetes: [int(c[5]), int(c[6])],
            exact: [exact(c[7]), exact(c[8])],
        })
        .collect()
}

/// What muster must answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Amount(u64),
    Negative,
    TooLarge,
    Invalid,
}

/// The number has no digits (`m`, `-.`, `Ki`): Kubernetes reads some such inputs as 0, muster rejects them all.
fn digitless(input: &str) -> bool {
    let s = input.trim();
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let s = s.strip_prefix('.').unwrap_or(s);
    !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Kubernetes' answer differs from the exact value in a unit where that value fits: it misread the input (it keeps
/// exponents in 32 bits). muster rejects such an input in every unit.
fn misread(v: &Vector) -> bool {
    (0..2).any(|u| match v.exact[u] {
        Some(Exact::Amount(a)) if a <= i64::MAX as u128 => v.kubernetes[u] != Some(a as i64),
        _ => false,
    })
}

fn expect(v: &Vector, u: usize) -> Expect {
    if !v.json_ok || digitless(&v.input) {
        return Expect::Invalid;
    }
    match v.exact[u].expect("an accepted row has exact values") {
        Exact::Negative => Expect::Negative,
        _ if misread(v) => Expect::Invalid,
        Exact::Huge => Expect::TooLarge,
        Exact::Amount(a) => match u64::try_from(a) {
            Ok(a) if a <= i64::MAX as u64 => Expect::Amount(a),
            _ => Expect::TooLarge,
        },
    }
}

fn answer(result: &Result<u64, QuantityError>) -> Expect {
    match result {
        Ok(a) => Expect::Amount(*a),
        Err(QuantityError::Negative { .. }) => Expect::Negative,
        Err(QuantityError::TooLarge { .. }) => Expect::TooLarge,
        Err(QuantityError::Invalid { .. }) => Expect::Invalid,
    }
}

#[test]
fn every_vector_parses_as_kubernetes_does_or_is_refused() {
    let vectors = vectors();
    let mut failures = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for v in &vectors {
        for (u, (unit, unit_name)) in UNITS.into_iter().enumerate() {
            let want = expect(v, u);
            if let Expect::Amount(a) = want {
                assert_eq!(v.kubernetes[u], Some(a as i64), "{v:?}: an amount muster returns is Kubernetes' amount");
            }
            let got = parse_amount(&v.input, unit);
            if answer(&got) != want {
                failures.push(format!("{} {:?} ({unit_name}): want {want:?}, got {got:?}", v.source, v.input));
            }
            if let Err(e) = &got {
                let named = format!("{:?}", v.input);
                if !e.to_string().contains(&named) {
                    failures.push(format!("{:?}: the error does not name the input: {e}", v.input));
                }
            }
            let class = match want {
                Expect::Amount(_) => "amount",
                Expect::Invalid if !v.json_ok => "rejected by Kubernetes",
                Expect::Invalid if digitless(&v.input) => "no digits",
                Expect::Invalid => "misread by Kubernetes",
                Expect::Negative => "negative",
                Expect::TooLarge => "too large",
            };
            *seen.entry(format!("{unit_name}: {class}")).or_default() += 1;
        }
        if misread(v) {
            assert!(v.input.contains(['e', 'E']), "{v:?}: only a decimal exponent is misread");
        }
        if v.json_ok && digitless(&v.input) {
            assert_eq!(v.kubernetes, [Some(0), Some(0)], "{v:?}: Kubernetes reads a number without digits as 0");
        }
    }
    eprintln!("{} vectors: {seen:#?}", vectors.len());
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
    for unit in ["whole", "milli"] {
        for class in ["amount", "rejected by Kubernetes", "no digits", "misread by Kubernetes", "negative", "too large"]
        {
            assert!(seen.contains_key(&format!("{unit}: {class}")), "no {unit} vector is {class}");
        }
    }
    assert!(vectors.len() >= 600, "the fixture lost rows: {}", vectors.len());
}

/// ParseQuantity rejects surrounding whitespace; the API server's JSON decoder trims it first, and so does muster.
#[test]
fn whitespace_is_trimmed_like_the_api_server_json_decoder() {
    let mut trimmed = 0;
    for v in vectors() {
        if v.parse_ok != v.json_ok {
            assert!(!v.parse_ok && v.input.trim() != v.input, "{v:?}: only surrounding whitespace differs");
            trimmed += 1;
        }
        for (unit, _) in UNITS {
            assert_eq!(parse_amount(&v.input, unit).ok(), parse_amount(v.input.trim(), unit).ok(), "{v:?}");
        }
    }
    assert!(trimmed >= 15, "the fixture lost its whitespace rows: {trimmed}");
}

/// What the API server stores (`String()`) reads back as the same amount.
#[test]
fn canonical_strings_parse_to_the_same_amount() {
    for v in vectors() {
        for (u, (unit, _)) in UNITS.into_iter().enumerate() {
            if let Expect::Amount(a) = expect(&v, u) {
                assert_eq!(parse_amount(v.canonical, unit), Ok(a), "{v:?}: canonical {:?}", v.canonical);
            }
        }
    }
}

/// `format_amount` writes strings Kubernetes reads as the same amount, and muster reads back; the fixture covers
/// every amount the vectors produce.
#[test]
fn formatted_amounts_are_read_back_by_kubernetes_and_muster() {
    let header = "unit\tamount\tformatted\tparse\tcanonical\tscaled";
    let mut checked = BTreeSet::new();
    for c in rows(FORMATTED, header) {
        let unit = match c[0] {
            "whole" => Unit::Whole,
            "milli" => Unit::Milli,
            other => panic!("unknown unit {other:?}"),
        };
        let amount: u64 = c[1].parse().expect("amount");
        assert_eq!(format_amount(amount, unit), c[2], "the generator's copy of format_amount has drifted");
        assert_eq!(c[3], "ok", "Kubernetes rejects {:?}", c[2]);
        assert_eq!(c[5], amount.to_string(), "Kubernetes reads {:?} as {} {}, not {amount}", c[2], c[5], c[0]);
        assert_eq!(parse_amount(c[2], unit), Ok(amount), "{:?}", c[2]);
        assert_eq!(parse_amount(c[4], unit), Ok(amount), "canonical {:?}", c[4]);
        checked.insert((c[0], amount));
    }
    for v in vectors() {
        for (u, (unit, unit_name)) in UNITS.into_iter().enumerate() {
            if let Expect::Amount(a) = expect(&v, u) {
                assert_eq!(parse_amount(&format_amount(a, unit), unit), Ok(a));
                assert!(
                    checked.contains(&(unit_name, a)),
                    "{unit_name} {a} (from {:?}) is not in the format fixture",
                    v.input
                );
            }
        }
    }
}
