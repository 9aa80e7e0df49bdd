//! Hugging Face tokenizers (`tokenizer.json`: WordPiece, BPE, Unigram; or a BERT `vocab.txt`)
//! through their own Rust crate, so a text model reads the ids its checkpoint was trained on. A leaf module: the
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

/// The file a tokenizer path names: the path itself, or in a folder (a Hugging Face checkpoint
/// saved with `save_pretrained`) its `tokenizer.json`, else the `vocab.txt` of a BERT
/// WordPiece vocabulary.
pub fn resolve(path: &Path) -> PathBuf {
    if path.is_dir() {
        let json = path.join("tokenizer.json");
        let vocab = path.join("vocab.txt");
        if !json.exists() && vocab.exists() {
            vocab
        } else {
            json
        }
    } else {
        path.to_path_buf()
    }
}

/// Whether a [`resolve`]d tokenizer path is a BERT WordPiece `vocab.txt` (read with the
/// `tokenizer_config.json` beside it) rather than a `tokenizer.json`.
pub fn is_vocab_txt(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "txt")
}

/// BERT's tokenizer from a WordPiece `vocab.txt` and the settings of the
/// `tokenizer_config.json` beside it, built as `transformers` converts a `BertTokenizer` into
/// its fast tokenizer: BERT's normalizer (lowercasing unless `do_lower_case = false`, Chinese
/// characters split, accents as `strip_accents` says), BERT's pre-tokenizer, WordPiece with
/// `##` continuations, `[CLS] text [SEP]`.
fn bert_wordpiece(vocab: &Path, config: &serde_json::Value) -> Result<Tokenizer, String> {
    use tokenizers::models::wordpiece::WordPiece;
    use tokenizers::normalizers::bert::BertNormalizer;
    use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
    use tokenizers::processors::bert::BertProcessing;
    let token = |key: &str, default: &str| match &config[key] {
        serde_json::Value::String(t) => t.clone(),
        serde_json::Value::Object(o) => o
            .get("content")
            .and_then(|c| c.as_str())
            .unwrap_or(default)
            .to_string(),
        _ => default.to_string(),
    };
    let (unk, cls, sep) = (
        token("unk_token", "[UNK]"),
        token("cls_token", "[CLS]"),
        token("sep_token", "[SEP]"),
    );
    let model = WordPiece::from_file(&vocab.display().to_string())
        .unk_token(unk)
        .build()
        .map_err(|e| format!("not a WordPiece vocabulary: {e}"))?;
    let mut t = Tokenizer::new(model);
    let id = |t: &Tokenizer, name: &str| {
        t.token_to_id(name)
            .ok_or_else(|| format!("`{name}` is not in the vocabulary"))
    };
    let (cls_id, sep_id) = (id(&t, &cls)?, id(&t, &sep)?);
    // Without basic tokenization the converter keeps case, accents and Chinese characters.
    let basic = config["do_basic_tokenize"].as_bool().unwrap_or(true);
    t.with_normalizer(Some(if basic {
        BertNormalizer::new(
            true,
            config["tokenize_chinese_chars"].as_bool().unwrap_or(true),
            config["strip_accents"].as_bool(),
            config["do_lower_case"].as_bool().unwrap_or(true),
        )
    } else {
        BertNormalizer::new(true, false, Some(false), false)
    }));
    t.with_pre_tokenizer(Some(BertPreTokenizer));
    t.with_post_processor(Some(BertProcessing::new((sep, sep_id), (cls, cls_id))));
    let specials: Vec<tokenizers::AddedToken> = [
        "unk_token",
        "sep_token",
        "pad_token",
        "cls_token",
        "mask_token",
    ]
    .iter()
    .zip(["[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"])
    .map(|(key, default)| token(key, default))
    .filter(|name| t.token_to_id(name).is_some())
    .map(|name| tokenizers::AddedToken::from(name, true))
    .collect();
    t.add_special_tokens(&specials);
    Ok(t)
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
                "no such file (a folder must hold `tokenizer.json`, or a BERT `vocab.txt`)".into(),
            ));
        }
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
        let inner = if is_vocab_txt(&path) {
            bert_wordpiece(&path, &config).map_err(fail)?
        } else {
            Tokenizer::from_file(&path)
                .map_err(|e| fail(format!("not a Hugging Face `tokenizer.json`: {e}")))?
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
