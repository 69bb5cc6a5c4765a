//! `--input-tokens MEAN[,STD]`: prompts of a drawn token length, cut from a
//! long text at token boundaries given by the model's tokenizer (the server's
//! `/tokenize` or a GGUF file's, whichever the caller used to produce the
//! token end offsets).

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution as _, Normal};

use super::Prompt;
use crate::error::{LoadgenError, Result};

/// Requested prompt lengths: normal with `mean` and `std` tokens, at least 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputTokens {
    pub mean: u32,
    pub std: u32,
}

impl InputTokens {
    /// Parses `MEAN` or `MEAN,STD`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || LoadgenError::config("--input-tokens", format!("`{text}` is not MEAN[,STD]"));
        let mut it = text.split(',').map(|s| s.trim().parse::<u32>());
        let mean = it.next().and_then(|r| r.ok()).ok_or_else(bad)?;
        let std = match it.next() {
            Some(r) => r.map_err(|_| bad())?,
            None => 0,
        };
        if mean == 0 || it.next().is_some() {
            return Err(bad());
        }
        Ok(Self { mean, std })
    }

    /// The longest length [`synthetic_prompts`] will draw.
    pub fn max(&self) -> u32 {
        self.mean + 4 * self.std
    }
}

const PARAGRAPH: &str = "The llamas of the high valley walked each morning to the river, \
where the herder counted them twice, once by name and once by the colour of their wool. \
Nobody remembered who had first brought them over the pass, but every child knew the \
story of the grey one that carried salt for three winters and never lost a single sack. ";

/// A text of at least `min_chars` characters to cut prompts from.
pub fn corpus(min_chars: usize) -> String {
    let mut s = String::with_capacity(min_chars + PARAGRAPH.len());
    let mut n = 0u32;
    while s.len() < min_chars {
        // Numbered paragraphs so no two prompt windows are the same text.
        n += 1;
        s.push_str(&format!("{n}. "));
        s.push_str(PARAGRAPH);
    }
    s
}

/// `count` prompts with token lengths drawn from `spec`, each a window of
/// `corpus` starting at a random token. `token_ends[i]` is the byte offset
/// where token `i` of `corpus` ends. Windows start at different tokens so that
/// a server's prefix cache does not turn prefill into a no-op.
pub fn synthetic_prompts(
    corpus: &str,
    token_ends: &[usize],
    spec: InputTokens,
    count: usize,
    max_new_tokens: u32,
    seed: u64,
) -> Result<Vec<Prompt>> {
    let longest = spec.max() as usize;
    if token_ends.len() < longest + 1 {
        return Err(LoadgenError::config(
            "--input-tokens",
            format!(
                "the corpus has {} tokens, {} needed",
                token_ends.len(),
                longest + 1
            ),
        ));
    }
    let normal = Normal::new(f64::from(spec.mean), f64::from(spec.std))
        .map_err(|e| LoadgenError::config("--input-tokens", e.to_string()))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let boundary = |mut i: usize| {
        i = i.min(corpus.len());
        while !corpus.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let n = normal.sample(&mut rng).round().clamp(1.0, longest as f64) as usize;
        let first = rng.random_range(0..=token_ends.len() - n);
        let start = if first == 0 { 0 } else { token_ends[first - 1] };
        let end = token_ends[first + n - 1];
        let text = corpus[boundary(start)..boundary(end)].to_string();
        out.push(Prompt {
            text,
            max_new_tokens,
            input_tokens: Some(n as u32),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whitespace "tokenizer": each word with its leading space is a token.
    fn word_ends(text: &str) -> Vec<usize> {
        let mut ends: Vec<usize> = text
            .match_indices(' ')
            .map(|(i, _)| i)
            .filter(|&i| i > 0)
            .collect();
        ends.push(text.len());
        ends
    }

    #[test]
    fn prompts_have_the_drawn_token_counts() {
        let text = corpus(20_000);
        let ends = word_ends(&text);
        let spec = InputTokens::parse("100,10").unwrap();
        let ps = synthetic_prompts(&text, &ends, spec, 200, 16, 7).unwrap();
        let lens: Vec<u32> = ps.iter().map(|p| p.input_tokens.unwrap()).collect();
        let mean = lens.iter().map(|&l| f64::from(l)).sum::<f64>() / lens.len() as f64;
        assert!((mean - 100.0).abs() < 3.0, "mean {mean}");
        // The text really is that many "tokens" long.
        for p in &ps[..20] {
            let words = p.text.split(' ').filter(|w| !w.is_empty()).count() as u32;
            assert_eq!(words, p.input_tokens.unwrap(), "{:?}", p.text);
        }
        assert_eq!(
            ps,
            synthetic_prompts(&text, &ends, spec, 200, 16, 7).unwrap(),
            "seeded"
        );
    }

    #[test]
    fn spec_parsing_and_short_corpus() {
        assert_eq!(
            InputTokens::parse("512").unwrap(),
            InputTokens { mean: 512, std: 0 }
        );
        assert!(InputTokens::parse("0").is_err());
        assert!(InputTokens::parse("1,2,3").is_err());
        let spec = InputTokens::parse("50").unwrap();
        assert!(synthetic_prompts("a b", &[1, 3], spec, 1, 1, 0).is_err());
    }
}
