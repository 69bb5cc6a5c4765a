//! The corrections llama.cpp makes to a vocabulary's stored token types
//! when it loads one, by token text: end-of-generation and
//! fill-in-the-middle markers stored as ordinary tokens become control
//! tokens (so plain text that spells them stays text), a few models'
//! markers are demoted, and some models' special tokens take the
//! whitespace beside them. Converters often leave these types wrong;
//! following llama.cpp keeps ids and stopping equal to its on such files.

use super::vocab::{TokenType, Vocab};

/// Texts that end generation wherever they are in the vocabulary; each
/// becomes a control token.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle markers by role (prefix, suffix, middle, pad,
/// repository, file separator): where the metadata names none for a role,
/// the first of its texts in the vocabulary becomes a control token.
const FIM_TEXTS: [&[&str]; 6] = [
    &[
        "<|fim_prefix|>",
        "<fim-prefix>",
        "<fim_prefix>",
        "<｜fim▁begin｜>",
        "<PRE>",
        "▁<PRE>",
        "<|code_prefix|>",
        "<|prefix|>",
    ],
    &[
        "<|fim_suffix|>",
        "<fim-suffix>",
        "<fim_suffix>",
        "<｜fim▁hole｜>",
        "<SUF>",
        "▁<SUF>",
        "<|code_suffix|>",
        "<|suffix|>",
    ],
    &[
        "<|fim_middle|>",
        "<fim-middle>",
        "<fim_middle>",
        "<｜fim▁end｜>",
        "<MID>",
        "▁<MID>",
        "<|code_middle|>",
        "<|middle|>",
    ],
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    &[
        "<|fim_repo|>",
        "<|repo_name|>",
        "<fim-repo>",
        "<REPO>",
        "<reponame>",
    ],
    &["<|file_sep|>"],
];

/// The FIM roles (pad, repository, file separator) that end generation.
const FIM_EOG: std::ops::Range<usize> = 3..6;

/// Metadata keys of the FIM roles, in [`FIM_TEXTS`]' order; the older
/// `prefix`/`suffix`/`middle` keys win where both are present, as in
/// llama.cpp.
pub const FIM_KEYS: [&[&str]; 6] = [
    &["fim_pre_token_id", "prefix_token_id"],
    &["fim_suf_token_id", "suffix_token_id"],
    &["fim_mid_token_id", "middle_token_id"],
    &["fim_pad_token_id"],
    &["fim_rep_token_id"],
    &["fim_sep_token_id"],
];

/// Markers that some templates print as text (gpt-oss): always
/// user-defined.
const ALWAYS_RENDERED: [&str; 4] = ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/// Whitespace a special token takes from the text beside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Strip {
    /// Whitespace just before the token.
    pub left: bool,
    /// Whitespace just after the token.
    pub right: bool,
}

/// What the corrections read besides the vocabulary.
#[derive(Debug, Default)]
pub struct Metadata<'a> {
    /// `general.name`.
    pub name: Option<&'a str>,
    /// `general.architecture`.
    pub arch: Option<&'a str>,
    /// `tokenizer.ggml.pre`.
    pub pre: Option<&'a str>,
    /// End of sequence, of turn, of message.
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    /// FIM roles' ids from the metadata, in [`FIM_KEYS`]' order.
    pub fim: [Option<u32>; 6],
}

/// The corrections' results beside the corrected types.
#[derive(Debug, Default)]
pub struct Corrected {
    /// Tokens that end generation, EOS first.
    pub eog: Vec<u32>,
    /// Special tokens that take whitespace from their neighbours.
    pub strip: Vec<(u32, Strip)>,
}

/// Corrects `vocab.types` in place as llama.cpp does at load and returns
/// the end-of-generation set and the whitespace rules.
pub fn correct(vocab: &mut Vocab, meta: &Metadata) -> Corrected {
    let mut fim = meta.fim;
    for (role, texts) in FIM_TEXTS.iter().enumerate() {
        if fim[role].is_none() {
            fim[role] = texts.iter().find_map(|t| vocab.id(t));
            if let Some(id) = fim[role] {
                make_control(vocab, id);
            }
        }
    }
    let mut eog: Vec<u32> = Vec::new();
    add(&mut eog, meta.eos);
    for id in fim[FIM_EOG].iter() {
        add(&mut eog, *id);
    }
    for text in EOG_TEXTS {
        if let Some(id) = vocab.id(text) {
            add(&mut eog, Some(id));
            make_control(vocab, id);
        }
    }
    for text in ALWAYS_RENDERED {
        if let Some(id) = vocab.id(text) {
            vocab.types[id as usize] = TokenType::UserDefined;
        }
    }
    add(&mut eog, meta.eot);
    add(&mut eog, meta.eom);
    let in_eog = |eog: &[u32], text: &str| vocab.id(text).filter(|id| eog.contains(id));
    let has = |text: &str| in_eog(&eog, text).is_some();
    // Harmony-style vocabularies end a message with `<|end|>` but a
    // response with `<|return|>` or `<|call|>`: `<|end|>` is text there.
    let call = has("<|call|>") || has("<|calls|>");
    let end_is_text = call && (has("<|return|>") || has("<|flush|>"));
    let end = in_eog(&eog, "<|end|>").filter(|_| end_is_text);
    // Where another marker ends a turn (gemma 4, plamo), `</s>` is text.
    let s_is_text = has("<|tool_response>") || has("<|plamo:eos|>");
    let s = in_eog(&eog, "</s>").filter(|_| s_is_text);
    if let Some(end) = end {
        eog.retain(|&id| id != end);
        vocab.types[end as usize] = TokenType::UserDefined;
    }
    if let Some(s) = s {
        eog.retain(|&id| id != s);
        vocab.types[s as usize] = TokenType::Normal;
    }
    Corrected {
        eog,
        strip: strip_rules(vocab, meta),
    }
}

/// Makes `id` a control token unless it is one (or the unknown token).
fn make_control(vocab: &mut Vocab, id: u32) {
    let t = &mut vocab.types[id as usize];
    if !matches!(t, TokenType::Control | TokenType::Unknown) {
        *t = TokenType::Control;
    }
}

/// Adds `id` to `eog` once.
fn add(eog: &mut Vec<u32>, id: Option<u32>) {
    if let Some(id) = id.filter(|id| !eog.contains(id)) {
        eog.push(id);
    }
}

/// The models whose special tokens take whitespace, by llama.cpp's names.
fn strip_rules(vocab: &Vocab, meta: &Metadata) -> Vec<(u32, Strip)> {
    let name = meta.name.unwrap_or("").to_lowercase();
    let contains_any = |s: &str, parts: &[&str]| parts.iter().any(|p| s.contains(p));
    let left = Strip {
        left: true,
        right: false,
    };
    let right = Strip {
        left: false,
        right: true,
    };
    let by_text = |text: &str, strip: Strip| vocab.id(text).map(|id| (id, strip));
    if contains_any(
        meta.pre.unwrap_or(""),
        &["jina-v2-de", "jina-v2-es", "jina-v2-code"],
    ) || contains_any(meta.arch.unwrap_or(""), &["nomic-bert-moe", "jina-bert-v3"])
    {
        by_text("<mask>", left).into_iter().collect()
    } else if contains_any(&name, &["phi-3", "phi3"]) {
        // Every special token but these takes the whitespace after it
        // (llama.cpp's extra rule for `</s>` is already covered: the
        // corrections above made it a control token).
        let keep = ["<unk>", "<s>", "<|endoftext|>"].map(|t| vocab.id(t));
        vocab
            .types
            .iter()
            .enumerate()
            .map(|(id, t)| (id as u32, t))
            .filter(|(id, t)| {
                matches!(
                    t,
                    TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                ) && !keep.contains(&Some(*id))
            })
            .map(|(id, _)| (id, right))
            .collect()
    } else if name.contains("modern-bert") {
        by_text("[MASK]", left).into_iter().collect()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(entries: &[(&str, TokenType)]) -> Vocab {
        Vocab::new(
            entries.iter().map(|(t, _)| t.to_string()).collect(),
            entries.iter().map(|(_, ty)| *ty).collect(),
            vec![0.0; entries.len()],
        )
    }

    #[test]
    fn end_markers_stored_as_text_become_control_and_end_generation() {
        let mut v = vocab(&[
            ("<|endoftext|>", TokenType::Normal),
            ("a", TokenType::Normal),
            ("</s>", TokenType::UserDefined),
            ("<|fim_pad|>", TokenType::Normal),
            ("<PAD>", TokenType::Normal),
        ]);
        let meta = Metadata {
            eos: Some(1),
            ..Default::default()
        };
        let c = correct(&mut v, &meta);
        assert_eq!(c.eog, vec![1, 3, 0, 2]);
        assert_eq!(v.types[0], TokenType::Control);
        assert_eq!(v.types[1], TokenType::Normal);
        assert_eq!(v.types[2], TokenType::Control);
        // The first pad marker in llama.cpp's list takes the role.
        assert_eq!(v.types[3], TokenType::Control);
        assert_eq!(v.types[4], TokenType::Normal);
        assert!(c.strip.is_empty());
    }

    #[test]
    fn a_fim_role_named_in_the_metadata_is_not_searched() {
        let mut v = vocab(&[("<PRE>", TokenType::Normal), ("<x>", TokenType::Normal)]);
        let meta = Metadata {
            fim: [Some(1), None, None, None, None, None],
            ..Default::default()
        };
        correct(&mut v, &meta);
        assert_eq!(v.types[0], TokenType::Normal);
    }

    #[test]
    fn harmony_end_is_text_when_return_and_call_end_generation() {
        let mut v = vocab(&[
            ("<|end|>", TokenType::Control),
            ("<|return|>", TokenType::Control),
            ("<|call|>", TokenType::Control),
            ("<|channel|>", TokenType::Control),
        ]);
        let c = correct(&mut v, &Metadata::default());
        assert_eq!(c.eog, vec![1, 2]);
        assert_eq!(v.types[0], TokenType::UserDefined);
        assert_eq!(v.types[3], TokenType::UserDefined);
    }

    #[test]
    fn phi3_special_tokens_take_the_whitespace_after_them() {
        let mut v = vocab(&[
            ("<unk>", TokenType::Control),
            ("<s>", TokenType::Control),
            ("</s>", TokenType::UserDefined),
            ("<|end|>", TokenType::Control),
            ("<|endoftext|>", TokenType::Control),
            ("a", TokenType::Normal),
        ]);
        let meta = Metadata {
            name: Some("Phi3"),
            ..Default::default()
        };
        let c = correct(&mut v, &meta);
        let ids: Vec<u32> = c.strip.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![2, 3]);
        assert!(c.strip.iter().all(|(_, s)| s.right && !s.left));
    }
}
