//! `tokenizer` of a text model: the dataset's word vocabulary (`"words"`, the default of
//! `lstm`) or a Hugging Face `tokenizer.json` (or a BERT `vocab.txt`), whose ids a
//! `bert`/`distilbert` model reads.

use super::raw::RawModel;
use super::{Family, not_for};
use crate::manifest::error::Problems;
use crate::tokenizer::TextTokenizer;
use serde::Serialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A Hugging Face tokenizer file a model reads its text through; two are the same tokenizer
/// when their bytes are, wherever they lie.
#[derive(Debug, Clone, Serialize)]
pub struct TokenizerRef {
    /// The `tokenizer.json` (resolved against the manifest's folder); its digest, not its
    /// path, is part of stage ids.
    #[serde(skip)]
    pub path: PathBuf,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
}

impl PartialEq for TokenizerRef {
    fn eq(&self, other: &Self) -> bool {
        self.sha256 == other.sha256
    }
}

/// The tokenizer file of `models.<name>` with its vocabulary size and padding id: the
/// `tokenizer` key, else (for encoders) `tokenizer.json` in the `weights` checkpoint folder.
/// `None` for the word vocabulary.
pub(super) fn check_tokenizer(
    name: &str,
    family: Family,
    m: &RawModel,
    base: &Path,
    problems: &mut Problems,
) -> Option<(TokenizerRef, usize, usize)> {
    let key = match (&m.tokenizer, &m.weights) {
        (Some(t), _) if t.get_ref() == "words" => {
            if family.is_encoder() {
                problems.push(
                    Some(t.span()),
                    format!(
                        "`models.{name}` (`{}`) reads subword ids, not the dataset's words",
                        family.name()
                    ),
                    Some("`tokenizer = \"path/to/tokenizer.json\"`".into()),
                );
            }
            return None;
        }
        (Some(t), _) => t.clone(),
        (None, Some(w)) if family.is_encoder() && base.join(w.get_ref()).is_dir() => w.clone(),
        (None, _) => return None,
    };
    if !family.is_encoder() {
        if family == Family::Lstm {
            problems.push(
                Some(key.span()),
                format!("`models.{name}.tokenizer`: an `lstm` reads the dataset's words (`tokenizer = \"words\"`)"),
                Some("its last step must follow the last word; subword tokenizers pad on the right".into()),
            );
        } else {
            not_for(name, family, "tokenizer", Some(key.span()), problems);
        }
        return None;
    }
    let path = crate::tokenizer::resolve(&base.join(key.get_ref()));
    let loaded = TextTokenizer::open(&path).and_then(|t| Ok((t.vocab_size(), t.pad_id()?)));
    let (vocab, pad) = match loaded {
        Ok(v) => v,
        Err(e) => {
            problems.push(
                Some(key.span()),
                format!("`models.{name}.tokenizer`: {e}"),
                Some("the path is relative to the manifest's folder".into()),
            );
            return None;
        }
    };
    if vocab > usize::from(u16::MAX) + 1 {
        problems.push(
            Some(key.span()),
            format!(
                "`models.{name}.tokenizer`: {vocab} ids; a text row holds ids up to {}",
                u16::MAX
            ),
            Some("tokenizers of at most 65,536 ids (BERT's 30,522, GPT-2's 50,257) fit".into()),
        );
        return None;
    }
    let (path, sha256) = super::file_digest(
        name,
        "tokenizer",
        &Spanned::new(key.span(), path.display().to_string()),
        Path::new(""),
        problems,
    );
    // A `vocab.txt` tokenizer is also what `tokenizer_config.json` says (lowercasing, accents,
    // special tokens): both files are in its digest.
    let config = path.with_file_name("tokenizer_config.json");
    let sha256 = match std::fs::read(&config) {
        Ok(bytes) if crate::tokenizer::is_vocab_txt(&path) => {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(sha256.as_bytes());
            h.update(&bytes);
            hex::encode(h.finalize())
        }
        _ => sha256,
    };
    Some((TokenizerRef { path, sha256 }, vocab, pad as usize))
}
