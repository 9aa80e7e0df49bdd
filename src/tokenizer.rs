//! Hugging Face tokenizers (`tokenizer.json`: WordPiece, BPE, Unigram) through their own Rust
//! crate, so a text model reads the ids its checkpoint was trained on. A leaf module: the
//! manifest asks it for a vocabulary's size and padding id, the text reader for ids.

use std::path::{Path, PathBuf};
use thiserror::Error;
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

/// A tokenizer file that cannot be used.
#[derive(Debug, Error)]
#[error("tokenizer `{}`: {message}", path.display())]
pub struct TokenizerError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// A loaded `tokenizer.json`.
pub struct TextTokenizer {
    path: PathBuf,
    inner: Tokenizer,
    /// `pad_token` of the `tokenizer_config.json` beside it, which Python's tokenizer pads with.
    pad_token: Option<String>,
}

/// The file a tokenizer path names: the path itself, or `tokenizer.json` in a folder (a Hugging
/// Face checkpoint saved with `save_pretrained`).
pub fn resolve(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("tokenizer.json")
    } else {
        path.to_path_buf()
    }
}

impl TextTokenizer {
    /// Reads `path` ([`resolve`]d).
    pub fn open(path: &Path) -> Result<Self, TokenizerError> {
        let path = resolve(path);
        let fail = |message: String| TokenizerError {
            path: path.clone(),
            message,
        };
        if !path.exists() {
            return Err(fail(
                "no such file (a folder must hold `tokenizer.json`: `AutoTokenizer.from_pretrained(folder).save_pretrained(folder)` writes one from `vocab.txt`)"
                    .into(),
            ));
        }
        let inner = Tokenizer::from_file(&path)
            .map_err(|e| fail(format!("not a Hugging Face `tokenizer.json`: {e}")))?;
        // `transformers` reads the padding token and the sides it pads and cuts from
        // `tokenizer_config.json` (written by `save_pretrained`), not from `tokenizer.json`.
        let config_path = path.with_file_name("tokenizer_config.json");
        let config: serde_json::Value = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| TokenizerError {
                path: config_path.clone(),
                message: format!("not JSON: {e}"),
            })?,
            Err(_) => serde_json::Value::Null,
        };
        for key in ["padding_side", "truncation_side"] {
            if let Some(side) = config[key].as_str().filter(|s| *s != "right") {
                return Err(TokenizerError {
                    path: config_path,
                    message: format!(
                        "`{key} = \"{side}\"`: kdgrid pads and cuts texts on the right"
                    ),
                });
            }
        }
        let pad_token = match &config["pad_token"] {
            serde_json::Value::String(t) => Some(t.clone()),
            serde_json::Value::Object(o) => o
                .get("content")
                .and_then(|c| c.as_str())
                .map(str::to_string),
            _ => None,
        };
        Ok(Self {
            path,
            inner,
            pad_token,
        })
    }

    /// Ids the tokenizer can produce (its vocabulary and added tokens).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id that pads a text to its length: `tokenizer_config.json`'s `pad_token` (as Python
    /// pads), else the tokenizer's own padding setting, else the id of `[PAD]` or `<pad>`.
    pub fn pad_id(&self) -> Result<u32, TokenizerError> {
        if let Some(token) = &self.pad_token {
            return self.inner.token_to_id(token).ok_or_else(|| TokenizerError {
                path: self.path.clone(),
                message: format!(
                    "the padding token `{token}` of tokenizer_config.json is not in the vocabulary"
                ),
            });
        }
        if let Some(p) = self.inner.get_padding() {
            return Ok(p.pad_id);
        }
        ["[PAD]", "<pad>"]
            .iter()
            .find_map(|t| self.inner.token_to_id(t))
            .ok_or_else(|| TokenizerError {
                path: self.path.clone(),
                message: "no padding token (`[PAD]` or `<pad>`), and no padding setting".into(),
            })
    }

    /// The ids of every text with special tokens, cut to `max_length` and padded on the right
    /// with [`TextTokenizer::pad_id`] to exactly `max_length`: what
    /// `tokenizer(texts, truncation=True, max_length=max_length, padding="max_length")` gives
    /// in Python. Attention masks are where the ids are not the padding id.
    pub fn encode(
        &self,
        texts: &[&str],
        max_length: usize,
    ) -> Result<Vec<Vec<u32>>, TokenizerError> {
        let fail = |message: String| TokenizerError {
            path: self.path.clone(),
            message,
        };
        let pad_id = self.pad_id()?;
        let pad_token = self
            .inner
            .id_to_token(pad_id)
            .unwrap_or_else(|| "[PAD]".into());
        let mut t = self.inner.clone();
        t.with_truncation(Some(TruncationParams {
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(|e| fail(e.to_string()))?;
        t.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_length),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id: 0,
            pad_token,
        }));
        texts
            .iter()
            .map(|text| {
                t.encode(*text, true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| fail(e.to_string()))
            })
            .collect()
    }
}
