//! Event types (`Noun.verb`) and the patterns handlers and subscriptions match them with
//! (`Customer.*`, `*.created`, `*`).

/// Longest part of an event type (the noun or the verb).
pub const MAX_PART_LEN: usize = 64;

/// Checks that `t` is an event type: `Noun.verb`, each part a letter followed by letters,
/// digits or `_`.
pub fn check_event_type(t: &str) -> Result<(), String> {
    let (noun, verb) = t
        .split_once('.')
        .ok_or_else(|| format!("event type `{t}` must be `Noun.verb` (e.g. `Customer.created`)"))?;
    for part in [noun, verb] {
        check_part(part).map_err(|why| format!("event type `{t}`: {why}"))?;
    }
    Ok(())
}

fn check_part(part: &str) -> Result<(), String> {
    let mut chars = part.chars();
    match chars.next() {
        None => return Err("a part is empty".into()),
        Some(c) if !c.is_ascii_alphabetic() => {
            return Err(format!("`{part}` must start with a letter"));
        }
        Some(_) => {}
    }
    if part.len() > MAX_PART_LEN {
        return Err(format!("`{part}` is longer than {MAX_PART_LEN} characters"));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
        return Err(format!(
            "`{part}` contains `{c}`; use letters, digits and `_`"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Any,
    Exact(String),
}

impl Part {
    fn parse(s: &str) -> Result<Part, String> {
        if s == "*" {
            Ok(Part::Any)
        } else {
            check_part(s).map(|()| Part::Exact(s.to_string()))
        }
    }
    fn matches(&self, s: &str) -> bool {
        match self {
            Part::Any => true,
            Part::Exact(e) => e == s,
        }
    }
}

/// A pattern over event types: `Noun.verb` where either part may be `*`; `*` alone matches
/// every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    noun: Part,
    verb: Part,
    text: String,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let (noun, verb) = if text == "*" {
            (Part::Any, Part::Any)
        } else {
            let (n, v) = text.split_once('.').ok_or_else(|| {
                format!("pattern `{text}` must be `Noun.verb`, `Noun.*`, `*.verb` or `*`")
            })?;
            let n = Part::parse(n).map_err(|why| format!("pattern `{text}`: {why}"))?;
            let v = Part::parse(v).map_err(|why| format!("pattern `{text}`: {why}"))?;
            (n, v)
        };
        Ok(Pattern {
            noun,
            verb,
            text: text.to_string(),
        })
    }

    /// True if the event type `t` (already checked) matches.
    pub fn matches(&self, t: &str) -> bool {
        match t.split_once('.') {
            Some((n, v)) => self.noun.matches(n) && self.verb.matches(v),
            None => false,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types() {
        assert!(check_event_type("Customer.created").is_ok());
        assert!(check_event_type("order_2.paid_now").is_ok());
        for bad in [
            "",
            "Customer",
            ".created",
            "Customer.",
            "Customer.*",
            "1a.b",
            "a.b.c",
            "a b.c",
        ] {
            assert!(check_event_type(bad).is_err(), "{bad} accepted");
        }
        assert!(check_event_type(&format!("{}.x", "a".repeat(65))).is_err());
    }

    #[test]
    fn wildcards() {
        let cases = [
            ("*", "Customer.created", true),
            ("Customer.*", "Customer.created", true),
            ("Customer.*", "Order.created", false),
            ("*.created", "Order.created", true),
            ("*.created", "Order.paid", false),
            ("*.*", "Order.paid", true),
            ("Order.paid", "Order.paid", true),
            ("Order.paid", "Order.paidx", false),
            ("Order.paid", "order.paid", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(Pattern::parse(p).unwrap().matches(t), want, "{p} vs {t}");
        }
        for bad in ["", "Customer", "Cust*.x", "*.", "a.b.c", "**"] {
            assert!(Pattern::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
