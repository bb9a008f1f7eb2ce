//! Node constraints of a member template, evaluated with kube-scheduler's semantics.
//!
//! - `nodeSelector`: every key must be present with exactly that value.
//! - required node affinity: the terms are ORed, the expressions inside a term ANDed; an empty term matches nothing.
//!   `In`/`NotIn`/`Exists`/`DoesNotExist`/`Gt`/`Lt` on labels; `matchFields` supports `metadata.name` (`In`/`NotIn`).
//! - taints: a `NoSchedule` or `NoExecute` taint blocks unless tolerated; `PreferNoSchedule` never blocks.
//!   An unschedulable (cordoned) node carries the implicit taint `node.kubernetes.io/unschedulable:NoSchedule`,
//!   which is how kube-scheduler's NodeUnschedulable plugin lets tolerating pods through.

use std::collections::BTreeMap;

pub const UNSCHEDULABLE_TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn parse(s: &str) -> Option<TaintEffect> {
        match s {
            "NoSchedule" => Some(TaintEffect::NoSchedule),
            "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
            "NoExecute" => Some(TaintEffect::NoExecute),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: TaintEffect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TolerationOperator {
    Equal,
    Exists,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Toleration {
    /// Empty with `Exists` tolerates every key.
    pub key: String,
    pub operator: TolerationOperator,
    pub value: String,
    /// `None` tolerates every effect.
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    /// Tolerates `node.kubernetes.io/unschedulable:NoSchedule`, the taint a cordoned node implies.
    fn tolerates_cordon(&self) -> bool {
        let key_ok = if self.key.is_empty() {
            self.operator == TolerationOperator::Exists
        } else {
            self.key == UNSCHEDULABLE_TAINT_KEY
        };
        let value_ok = self.key.is_empty() || self.operator == TolerationOperator::Exists || self.value.is_empty();
        key_ok && value_ok && self.effect.is_none_or(|e| e == TaintEffect::NoSchedule)
    }

    pub fn tolerates(&self, taint: &Taint) -> bool {
        if let Some(effect) = self.effect
            && effect != taint.effect
        {
            return false;
        }
        if self.key.is_empty() {
            return self.operator == TolerationOperator::Exists;
        }
        if self.key != taint.key {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => true,
            TolerationOperator::Equal => self.value == taint.value,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

impl SelectorOperator {
    pub fn parse(s: &str) -> Option<SelectorOperator> {
        Some(match s {
            "In" => SelectorOperator::In,
            "NotIn" => SelectorOperator::NotIn,
            "Exists" => SelectorOperator::Exists,
            "DoesNotExist" => SelectorOperator::DoesNotExist,
            "Gt" => SelectorOperator::Gt,
            "Lt" => SelectorOperator::Lt,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirement {
    pub key: String,
    pub operator: SelectorOperator,
    pub values: Vec<String>,
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
            SelectorOperator::Gt | SelectorOperator::Lt => {
                // Kubernetes requires exactly one integer value; anything else matches no node.
                let (Some(v), [bound]) = (value, self.values.as_slice()) else { return false };
                let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else { return false };
                if self.operator == SelectorOperator::Gt { v > bound } else { v < bound }
            }
        }
    }
}

/// One required node-affinity term: all expressions and field requirements must hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Term {
    pub match_expressions: Vec<Requirement>,
    /// Only `metadata.name` is defined by Kubernetes; other keys match nothing.
    pub match_fields: Vec<Requirement>,
}

impl Term {
    fn matches(&self, node: &NodeFacts<'_>) -> bool {
        if self.match_expressions.is_empty() && self.match_fields.is_empty() {
            return false;
        }
        self.match_expressions.iter().all(|r| r.matches(node.labels.get(&r.key).map(String::as_str)))
            && self.match_fields.iter().all(|r| r.key == "metadata.name" && r.matches(Some(node.name)))
    }
}

/// The placement constraints of a member template, canonicalised so equal constraints compare and hash equal
/// (the capacity index keeps one eligibility set per distinct `Placement`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Placement {
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity terms, ORed. Empty means "no affinity constraint".
    pub required_terms: Vec<Term>,
    pub tolerations: Vec<Toleration>,
}

/// What a constraint looks at on a node.
pub struct NodeFacts<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub taints: &'a [Taint],
    pub unschedulable: bool,
}

impl Placement {
    /// Sorts and deduplicates so that semantically equal placements are equal values.
    pub fn canonical(mut self) -> Placement {
        for term in &mut self.required_terms {
            for r in term.match_expressions.iter_mut().chain(term.match_fields.iter_mut()) {
                r.values.sort();
                r.values.dedup();
            }
            term.match_expressions.sort();
            term.match_fields.sort();
        }
        self.required_terms.sort();
        self.required_terms.dedup();
        self.tolerations.sort();
        self.tolerations.dedup();
        self
    }

    /// Whether `node` satisfies every constraint. (The hot path: no allocation; see `first_violation` for why
    /// not.)
    pub fn allows(&self, node: &NodeFacts<'_>) -> bool {
        let tolerated = |taint: &Taint| self.tolerations.iter().any(|t| t.tolerates(taint));
        self.node_selector.iter().all(|(k, v)| node.labels.get(k) == Some(v))
            && (self.required_terms.is_empty() || self.required_terms.iter().any(|t| t.matches(node)))
            && node.taints.iter().all(|t| t.effect == TaintEffect::PreferNoSchedule || tolerated(t))
            && (!node.unschedulable || self.tolerations.iter().any(|t| t.tolerates_cordon()))
    }

    /// Why this placement excludes `node`, or `None` when it allows it.
    pub fn first_violation(&self, node: &NodeFacts<'_>) -> Option<String> {
        for (k, v) in &self.node_selector {
            if node.labels.get(k) != Some(v) {
                return Some(format!("node selector {k}={v} does not match"));
            }
        }
        if !self.required_terms.is_empty() && !self.required_terms.iter().any(|t| t.matches(node)) {
            return Some("required node affinity does not match".to_string());
        }
        let tolerated = |taint: &Taint| self.tolerations.iter().any(|t| t.tolerates(taint));
        for taint in node.taints {
            if taint.effect != TaintEffect::PreferNoSchedule && !tolerated(taint) {
                return Some(format!("untolerated taint {}={}:{:?}", taint.key, taint.value, taint.effect));
            }
        }
        if node.unschedulable {
            let cordon = Taint {
                key: UNSCHEDULABLE_TAINT_KEY.to_string(),
                value: String::new(),
                effect: TaintEffect::NoSchedule,
            };
            if !tolerated(&cordon) {
                return Some("node is unschedulable (cordoned)".to_string());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
    fn req(key: &str, operator: SelectorOperator, values: &[&str]) -> Requirement {
        Requirement { key: key.into(), operator, values: values.iter().map(|v| v.to_string()).collect() }
    }
    fn term(reqs: Vec<Requirement>) -> Term {
        Term { match_expressions: reqs, match_fields: vec![] }
    }
    fn facts<'a>(name: &'a str, labels: &'a BTreeMap<String, String>, taints: &'a [Taint]) -> NodeFacts<'a> {
        NodeFacts { name, labels, taints, unschedulable: false }
    }

    #[test]
    fn affinity_operators() {
        use SelectorOperator::*;
        let l = labels(&[("zone", "a"), ("cores", "16")]);
        let n = facts("n1", &l, &[]);
        let allows = |reqs| Placement { required_terms: vec![term(reqs)], ..Default::default() }.allows(&n);
        assert!(allows(vec![req("zone", In, &["a", "b"])]));
        assert!(!allows(vec![req("zone", In, &["b"])]));
        assert!(allows(vec![req("zone", NotIn, &["b"])]));
        assert!(allows(vec![req("missing", NotIn, &["b"])]), "NotIn matches an absent label");
        assert!(allows(vec![req("zone", Exists, &[])]));
        assert!(!allows(vec![req("zone", DoesNotExist, &[])]));
        assert!(allows(vec![req("missing", DoesNotExist, &[])]));
        assert!(allows(vec![req("cores", Gt, &["8"])]));
        assert!(!allows(vec![req("cores", Lt, &["8"])]));
        assert!(!allows(vec![req("zone", Gt, &["8"])]), "a non-integer label never satisfies Gt");
        assert!(!allows(vec![req("cores", Gt, &["8", "9"])]), "Gt needs exactly one value");
        assert!(!allows(vec![]), "an empty term matches nothing");
        // Terms are ORed.
        let p = Placement {
            required_terms: vec![term(vec![req("zone", In, &["b"])]), term(vec![req("zone", In, &["a"])])],
            ..Default::default()
        };
        assert!(p.allows(&n));
        let by_name = Placement {
            required_terms: vec![Term {
                match_expressions: vec![],
                match_fields: vec![req("metadata.name", In, &["n1"])],
            }],
            ..Default::default()
        };
        assert!(by_name.allows(&n));
        assert!(!by_name.allows(&facts("n2", &l, &[])));
    }

    #[test]
    fn taints_and_tolerations() {
        let l = labels(&[]);
        let spot = [Taint { key: "spot".into(), value: "true".into(), effect: TaintEffect::NoSchedule }];
        let prefer = [Taint { key: "x".into(), value: "".into(), effect: TaintEffect::PreferNoSchedule }];
        let exec = [Taint { key: "gone".into(), value: "".into(), effect: TaintEffect::NoExecute }];
        let none = Placement::default();
        assert!(!none.allows(&facts("n", &l, &spot)));
        assert!(none.allows(&facts("n", &l, &prefer)), "PreferNoSchedule does not block");
        assert!(!none.allows(&facts("n", &l, &exec)));
        let tol = |key: &str, op, value: &str, effect| Placement {
            tolerations: vec![Toleration { key: key.into(), operator: op, value: value.into(), effect }],
            ..Default::default()
        };
        use TolerationOperator::*;
        assert!(tol("spot", Equal, "true", Some(TaintEffect::NoSchedule)).allows(&facts("n", &l, &spot)));
        assert!(!tol("spot", Equal, "false", Some(TaintEffect::NoSchedule)).allows(&facts("n", &l, &spot)));
        assert!(tol("spot", Exists, "", None).allows(&facts("n", &l, &spot)));
        assert!(!tol("spot", Exists, "", Some(TaintEffect::NoExecute)).allows(&facts("n", &l, &spot)));
        assert!(tol("", Exists, "", None).allows(&facts("n", &l, &exec)), "empty key + Exists tolerates all");
        let cordoned = NodeFacts { name: "n", labels: &l, taints: &[], unschedulable: true };
        assert!(!none.allows(&cordoned));
        assert!(tol(UNSCHEDULABLE_TAINT_KEY, Exists, "", None).allows(&cordoned));
    }

    #[test]
    fn node_selector_and_canonical_form() {
        let l = labels(&[("pool", "spot")]);
        let mut p = Placement::default();
        p.node_selector.insert("pool".into(), "spot".into());
        assert!(p.allows(&facts("n", &l, &[])));
        p.node_selector.insert("pool".into(), "od".into());
        assert!(p.first_violation(&facts("n", &l, &[])).unwrap().contains("pool=od"));
        let a = Placement {
            required_terms: vec![term(vec![req("z", SelectorOperator::In, &["b", "a", "a"])])],
            ..Default::default()
        };
        let b = Placement {
            required_terms: vec![term(vec![req("z", SelectorOperator::In, &["a", "b"])])],
            ..Default::default()
        };
        assert_eq!(a.canonical(), b.canonical());
    }
}
