//! The TOML layer of a manifest: syntax, named profiles, and deserialization of each section
//! that reports every wrong key and value rather than stopping at the first.
//!
//! Tables stay spanned (`toml::de::DeTable`) until each section is deserialized, so a value a
//! profile replaces is reported at its line in the profile.

use super::error::Problems;
use serde::Deserialize;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// A parsed document: its top-level entries, each with spans.
pub(crate) type Doc<'i> = DeTable<'i>;

/// Parses `text`, reporting every syntax error found.
pub(crate) fn parse<'i>(text: &'i str, problems: &mut Problems) -> Option<Doc<'i>> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    for e in &errors {
        problems.push(e.span(), e.message().trim().to_string(), None);
    }
    errors.is_empty().then(|| doc.into_inner())
}

/// Takes `[profiles]` out of `doc`, returns the profile names, and merges profile `name` (when
/// given) over the rest: tables merge key by key, any other value is replaced. A profile that
/// does not set `name` renames the study `<name>-<profile>`, so its results never mix with the
/// full study's.
pub(crate) fn apply_profile(
    doc: &mut Doc<'_>,
    name: Option<&str>,
    problems: &mut Problems,
) -> Vec<String> {
    let Some(profiles) = doc.remove("profiles") else {
        if let Some(name) = name {
            problems.push(
                None,
                format!("profile `{name}` is not defined"),
                Some("the manifest has no `[profiles]` table".into()),
            );
        }
        return Vec::new();
    };
    let span = profiles.span();
    let DeValue::Table(mut profiles) = profiles.into_inner() else {
        problems.push(Some(span), "`profiles` must be a table of tables", None);
        return Vec::new();
    };
    let names: Vec<String> = profiles.keys().map(|k| k.get_ref().to_string()).collect();
    for (key, value) in profiles.iter() {
        if !value.get_ref().is_table() {
            problems.push(
                Some(value.span()),
                format!(
                    "`profiles.{}` must be a table, e.g. `[profiles.{}.training]`",
                    key.get_ref(),
                    key.get_ref()
                ),
                None,
            );
        }
        if key.get_ref() == "profiles" {
            problems.push(Some(key.span()), "profiles cannot nest", None);
        }
    }
    if let Some(name) = name {
        match profiles.remove(name).map(Spanned::into_inner) {
            Some(DeValue::Table(over)) => {
                let renames = over.contains_key("name");
                merge(doc, over);
                if !renames
                    && let Some(study) = doc.get_mut("name")
                    && let Some(base) = study.get_ref().as_str()
                {
                    *study.get_mut() = DeValue::String(format!("{base}-{name}").into());
                }
            }
            Some(_) => {}
            None => problems.push(
                Some(span),
                format!("profile `{name}` is not defined"),
                Some(format!("profiles here: {}", super::backticked(&names))),
            ),
        }
    }
    names
}

fn merge<'i>(base: &mut DeTable<'i>, over: DeTable<'i>) {
    for (key, value) in over {
        match (base.get_mut(key.get_ref().as_ref()), value.get_ref()) {
            (Some(existing), DeValue::Table(_)) if existing.get_ref().is_table() => {
                let DeValue::Table(over) = value.into_inner() else {
                    unreachable!("checked to be a table")
                };
                let DeValue::Table(base) = existing.get_mut() else {
                    unreachable!("checked to be a table")
                };
                merge(base, over);
            }
            _ => {
                base.insert(key, value);
            }
        }
    }
}

/// Deserializes `value` as `T`, reporting every problem: after an error the offending entry
/// is set aside and the rest tried again, so one section can report many keys at once.
pub(crate) fn section<'i, T: Deserialize<'i>>(
    value: &Spanned<DeValue<'i>>,
    problems: &mut Problems,
) -> Option<T> {
    let mut value = value.clone();
    let mut removed: Vec<String> = Vec::new();
    let mut failed = false;
    // Each round removes one entry, so this ends; the bound only guards against surprises.
    for _ in 0..256 {
        let e = match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(t) => return (!failed).then_some(t),
            Err(e) => e,
        };
        failed = true;
        let message = e.message().trim().to_string();
        // A required key set aside for its own error, or misspelled, is not also "missing".
        if !removed
            .iter()
            .any(|k| message == format!("missing field `{k}`"))
        {
            let help = super::did_you_mean(&message);
            if let Some(meant) = help.as_deref().and_then(|h| h.split('`').nth(1)) {
                removed.push(meant.to_string());
            }
            problems.push(e.span(), message, help);
        }
        let (Some(span), DeValue::Table(table)) = (e.span(), value.get_mut()) else {
            return None;
        };
        let inside = |r: Range<usize>| r.start <= span.start && span.end <= r.end;
        let key = table
            .iter()
            .find(|(k, v)| inside(k.span()) || inside(v.span()))
            .map(|(k, _)| k.get_ref().to_string())?;
        table.remove(key.as_str());
        removed.push(key);
    }
    None
}
