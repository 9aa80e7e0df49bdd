//! Text classification files: `train.tsv` and `test.tsv`, one `label<TAB>text` per line.
//!
//! A text becomes one row of ids per tokenization the study's models read (a model's
//! [`crate::manifest::ModelSpec::view`]). Row 0 is the word vocabulary: words are lowercased
//! runs of letters, digits and apostrophes; the vocabulary is the training split's
//! `vocab_size` most frequent words (ties in alphabetical order, so it is the same on every
//! machine); id 0 pads, id 1 stands for any other word; a text becomes its first `max_length`
//! ids, left-padded, so a recurrent model's last step follows the last word. Row `n` holds the
//! ids of the dataset's `n`-th Hugging Face tokenizer, with its special tokens, cut and
//! right-padded to `max_length` as Python's tokenizer does.
//!
//! Every id is stored as two byte planes, `[2, rows, max_length]` (low bytes, then high bytes),
//! so a text travels through batching, hold-out and digests exactly as an image does; models
//! read the id back as `low + 256 * high`.

use super::{DataError, Split};
use crate::manifest::TextSpec;
use crate::tokenizer::TextTokenizer;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Loaded splits and class names (sorted labels of the training file).
pub struct Text {
    /// Training split.
    pub train: Split,
    /// Test split.
    pub test: Split,
    /// Class names; a label is an index into this.
    pub classes: Vec<String>,
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// The `(label, text)` lines of `path`, in file order. A leading UTF-8 byte-order mark (as
/// some editors write) is not part of the first label.
fn read(path: &Path) -> Result<Vec<(String, String)>, DataError> {
    let content = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::Missing {
            path: path.to_path_buf(),
        },
        _ => DataError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    let content = content.strip_prefix('\u{feff}').unwrap_or(&content);
    let mut out = Vec::new();
    for (i, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((label, text)) = line.split_once('\t') else {
            return Err(DataError::Corrupt {
                path: path.to_path_buf(),
                what: format!("line {}: expected `label<TAB>text`", i + 1),
            });
        };
        out.push((label.trim().to_string(), text.to_string()));
    }
    if out.is_empty() {
        return Err(DataError::Corrupt {
            path: path.to_path_buf(),
            what: "no `label<TAB>text` lines".into(),
        });
    }
    Ok(out)
}

/// At most `limit` of `lines`, taken class by class in turn (the first line of every label,
/// then the second, ...) and kept in file order, so a limit keeps every class, in equal numbers
/// even when a file lists one class after the other (as IMDB's layout does).
fn interleaved(lines: Vec<(String, String)>, limit: Option<usize>) -> Vec<(String, String)> {
    let Some(limit) = limit.filter(|&l| l < lines.len()) else {
        return lines;
    };
    let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (label, _)) in lines.iter().enumerate() {
        by_label.entry(label).or_default().push(i);
    }
    let mut keep = vec![false; lines.len()];
    let mut taken = 0;
    'rounds: for round in 0.. {
        for rows in by_label.values() {
            if let Some(&i) = rows.get(round) {
                keep[i] = true;
                taken += 1;
                if taken == limit {
                    break 'rounds;
                }
            }
        }
    }
    lines
        .into_iter()
        .zip(keep)
        .filter_map(|(line, k)| k.then_some(line))
        .collect()
}

/// Loads `dir/train.tsv` and `dir/test.tsv`, at most `limits` lines of each.
pub fn load(dir: &Path, spec: &TextSpec, limits: [Option<usize>; 2]) -> Result<Text, DataError> {
    let train_path = dir.join("train.tsv");
    let train = interleaved(read(&train_path)?, limits[0]);
    let test_path = dir.join("test.tsv");
    let test = interleaved(read(&test_path)?, limits[1]);
    let mut classes: Vec<String> = train.iter().map(|(l, _)| l.clone()).collect();
    classes.sort();
    classes.dedup();
    if classes.len() < 2 {
        return Err(DataError::Corrupt {
            path: train_path,
            what: format!(
                "the training split{} holds one label (`{}`); a classifier needs at least two",
                if limits[0].is_some() {
                    " (after `train-limit`)"
                } else {
                    ""
                },
                classes[0]
            ),
        });
    }
    if classes.len() > 256 {
        return Err(DataError::Corrupt {
            path: dir.join("train.tsv"),
            what: format!("{} labels; at most 256 are supported", classes.len()),
        });
    }
    if let Some((label, _)) = test.iter().find(|(l, _)| !classes.contains(l)) {
        return Err(DataError::Corrupt {
            path: test_path,
            what: format!("label `{label}` does not occur in train.tsv"),
        });
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (_, text) in &train {
        for w in words(text) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    let mut ranked: Vec<(String, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let vocab: HashMap<String, u16> = ranked
        .into_iter()
        .take(spec.vocab_size)
        .enumerate()
        .map(|(i, (w, _))| (w, i as u16 + 2))
        .collect();
    let tokenizers: Vec<TextTokenizer> = spec
        .tokenizers
        .iter()
        .map(|t| TextTokenizer::open(&t.path))
        .collect::<Result<_, _>>()
        .map_err(|e| DataError::Corrupt {
            path: e.path.clone(),
            what: e.message,
        })?;
    let length = spec.max_length;
    let encode = |lines: &[(String, String)]| -> Result<Split, DataError> {
        let rows = 1 + tokenizers.len();
        // Every row of every text, then laid out as planes text by text.
        let mut ids: Vec<Vec<u16>> = Vec::with_capacity(lines.len() * rows);
        let texts: Vec<&str> = lines.iter().map(|(_, t)| t.as_str()).collect();
        let mut subword: Vec<Vec<Vec<u32>>> = Vec::new();
        for (t, file) in tokenizers.iter().zip(&spec.tokenizers) {
            let encoded = t.encode(&texts, length).map_err(|e| DataError::Corrupt {
                path: e.path.clone(),
                what: e.message,
            })?;
            if let Some(id) = encoded
                .iter()
                .flatten()
                .find(|&&id| id > u32::from(u16::MAX))
            {
                return Err(DataError::Corrupt {
                    path: file.path.clone(),
                    what: format!(
                        "id {id} is above {}, the largest id a text row holds",
                        u16::MAX
                    ),
                });
            }
            subword.push(encoded);
        }
        for (i, (_, text)) in lines.iter().enumerate() {
            let words: Vec<u16> = words(text)
                .take(length)
                .map(|w| vocab.get(&w).copied().unwrap_or(1))
                .collect();
            let mut row = vec![0u16; length - words.len()];
            row.extend(words);
            ids.push(row);
            for view in &subword {
                ids.push(view[i].iter().map(|&id| id as u16).collect());
            }
        }
        let mut split = Split {
            images: Vec::with_capacity(lines.len() * 2 * rows * length),
            labels: Vec::with_capacity(lines.len()),
        };
        for (text, (label, _)) in ids.chunks_exact(rows).zip(lines) {
            split
                .images
                .extend(text.iter().flatten().map(|id| (id & 0xff) as u8));
            split
                .images
                .extend(text.iter().flatten().map(|id| (id >> 8) as u8));
            split
                .labels
                .push(classes.binary_search(label).expect("checked above") as u8);
        }
        Ok(split)
    };
    Ok(Text {
        train: encode(&train)?,
        test: encode(&test)?,
        classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_become_left_padded_ids_of_the_most_frequent_words() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("train.tsv"),
            "pos\tGreat film, great cast!\nneg\tdull film\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("test.tsv"),
            "neg\tGreat unknown words here\n",
        )
        .unwrap();
        let spec = TextSpec {
            vocab_size: 2,
            max_length: 3,
            tokenizers: Vec::new(),
        };
        let t = load(dir.path(), &spec, [None, None]).unwrap();
        assert_eq!(t.classes, ["neg", "pos"]);
        // Vocabulary: film (2), great (2) by count then alphabet; cast and dull are unknown.
        // "great film great" (cut at 3): ids 3 2 3; "dull film": pad, 1, 2.
        assert_eq!(t.train.images, [3, 2, 3, 0, 0, 0, 0, 1, 2, 0, 0, 0]);
        assert_eq!(t.train.labels, [1, 0]);
        assert_eq!(t.test.images, [3, 1, 1, 0, 0, 0]);
    }

    fn write(dir: &Path, train: &str, test: &str) {
        std::fs::write(dir.join("train.tsv"), train).unwrap();
        std::fs::write(dir.join("test.tsv"), test).unwrap();
    }

    const SPEC: TextSpec = TextSpec {
        vocab_size: 10,
        max_length: 2,
        tokenizers: Vec::new(),
    };

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_label() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "\u{feff}pos\tgood\nneg\tbad\n",
            "\u{feff}neg\tbad\n",
        );
        let t = load(dir.path(), &SPEC, [None, None]).unwrap();
        assert_eq!(t.classes, ["neg", "pos"]);
        assert_eq!(t.test.labels, [0]);
    }

    #[test]
    fn limits_keep_every_class_when_the_file_lists_one_class_after_the_other() {
        let dir = tempfile::tempdir().unwrap();
        // IMDB's layout: every `pos` review, then every `neg` one.
        let train: String = (0..6)
            .map(|i| format!("pos\tgood {i}\n"))
            .collect::<String>()
            + &(0..6)
                .map(|i| format!("neg\tbad {i}\n"))
                .collect::<String>();
        write(dir.path(), &train, &train);
        let t = load(dir.path(), &SPEC, [Some(4), Some(3)]).unwrap();
        assert_eq!(t.classes, ["neg", "pos"]);
        // Two of each class, kept in file order; an odd limit gives the first label (sorted)
        // the extra line.
        assert_eq!(t.train.labels, [1, 1, 0, 0]);
        assert_eq!(t.test.labels, [1, 0, 0]);
    }

    #[test]
    fn a_training_split_with_one_label_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "pos\tgood\npos\tfine\n", "pos\tgood\n");
        let err = load(dir.path(), &SPEC, [None, None])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("train.tsv") && err.contains("one label (`pos`)"),
            "{err}"
        );
    }
}
