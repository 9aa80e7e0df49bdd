//! Fuzzing the manifest language (run on stable, in `make test`, for a bounded number of cases):
//! the example manifests, mutated at random — bytes cut, tokens inserted, numbers replaced with
//! extreme values, lines duplicated — must parse to a located error or a plan, with every
//! profile applied, never a panic, a hang or an unbounded grid. `PROPTEST_CASES` sets the count.

use kdgrid::{manifest, plan};
use proptest::prelude::*;
use std::path::Path;

fn examples() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// One edit of a manifest's text.
#[derive(Debug, Clone)]
enum Edit {
    Cut(usize, usize),
    Insert(usize, &'static str),
    Number(usize, &'static str),
    DuplicateLine(usize),
}

const TOKENS: [&str; 16] = [
    "[",
    "]",
    "{",
    "}",
    "=",
    ",",
    "\"",
    "\n",
    "[grid]\n",
    "seed = { range = [0, 100000000] }\n",
    "chains = [[]]\n",
    "zip = [[\"seed\"]]\n",
    "[profiles.x.grid]\n",
    "@teacher",
    "-1",
    "nan",
];
const NUMBERS: [&str; 8] = [
    "0",
    "-3",
    "1e308",
    "18446744073709551615",
    "0.0",
    "inf",
    "1.5",
    "99999999",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(a, n)| Edit::Cut(a, n)),
        (any::<usize>(), prop::sample::select(TOKENS.to_vec()))
            .prop_map(|(a, t)| Edit::Insert(a, t)),
        (any::<usize>(), prop::sample::select(NUMBERS.to_vec()))
            .prop_map(|(a, n)| Edit::Number(a, n)),
        any::<usize>().prop_map(Edit::DuplicateLine),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut s = text.to_string();
    let at = |s: &String, a: usize| {
        let mut i = a % (s.len() + 1);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    for e in edits {
        match e {
            Edit::Cut(a, n) => {
                let i = at(&s, *a);
                let j = at(&s, i + n);
                s.replace_range(i..j.max(i), "");
            }
            Edit::Insert(a, t) => {
                let i = at(&s, *a);
                s.insert_str(i, t);
            }
            Edit::Number(a, n) => {
                // Replace the first number at or after a position.
                let i = at(&s, *a);
                if let Some(k) = s[i..].find(|c: char| c.is_ascii_digit()) {
                    let start = i + k;
                    let end = s[start..]
                        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                        .map_or(s.len(), |e| start + e);
                    s.replace_range(start..end, n);
                }
            }
            Edit::DuplicateLine(a) => {
                let lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let l = lines[a % lines.len()].to_string();
                    let i = at(&s, *a);
                    let i = s[..i].rfind('\n').map_or(0, |p| p + 1);
                    s.insert_str(i, &format!("{l}\n"));
                }
            }
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn mutated_manifests_never_panic(which in 0usize..16, edits in prop::collection::vec(edit(), 1..6)) {
        let all = examples();
        let (path, text) = &all[which % all.len()];
        let text = apply(text, &edits);
        let path = Path::new(path);
        if let Ok(m) = manifest::parse_profile(path, &text, None) {
            let p = plan::expand(&m, "");
            prop_assert!(p.cells.len() <= 100_000);
            for profile in m.profiles.clone() {
                if let Ok(m) = manifest::parse_profile(path, &text, Some(&profile)) {
                    let p = plan::expand(&m, "");
                    prop_assert!(p.stages.len() <= 10 * p.cells.len().max(1));
                }
            }
        }
    }
}
