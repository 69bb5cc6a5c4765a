//! Key/value caches of finished sequences, kept for reuse: a new request
//! whose prompt starts with tokens an earlier sequence already ran through
//! the model takes that cache and prefills only the rest of its prompt
//! (llama-server's `cache_prompt`, vLLM's and TGI's prefix caching). A
//! repeated prompt (the study's workload, a system prompt, an earlier chat
//! turn) then costs one token of prefill instead of all of them.

use std::collections::VecDeque;

use servebench_engine::generate::shared_prefix_len;
use servebench_engine::kv_cache::KvCache;

/// Finished sequences' caches, oldest first, within a memory budget.
pub struct PrefixCache {
    entries: VecDeque<(Vec<u32>, KvCache)>,
    budget_bytes: usize,
}

impl PrefixCache {
    /// Keeps at most `budget_bytes` of caches (0 turns reuse off).
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            budget_bytes,
        }
    }

    /// Keeps `cache`, whose positions hold `tokens`; the oldest entries go
    /// when the budget is exceeded. A cache from the KV pool keeps only the
    /// pages it filled and stays counted in the pool, until
    /// [`PrefixCache::evict_oldest`] makes room for admissions.
    pub fn put(&mut self, tokens: Vec<u32>, mut cache: KvCache) {
        if cache.is_empty() || cache.bytes() > self.budget_bytes {
            return;
        }
        cache.shrink_to_fit();
        self.entries.push_back((tokens, cache));
        let mut total: usize = self.entries.iter().map(|(_, c)| c.bytes()).sum();
        while total > self.budget_bytes {
            let (_, old) = self
                .entries
                .pop_front()
                .expect("over budget means not empty");
            total -= old.bytes();
        }
    }

    /// Takes the entry sharing the longest prefix with `prompt` (the most
    /// recent among equals): its tokens and cache. `None` when no entry
    /// shares a first token.
    pub fn take(&mut self, prompt: &[u32]) -> Option<(Vec<u32>, KvCache)> {
        let (best, len) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (tokens, _))| (i, shared_prefix_len(tokens, prompt)))
            .max_by_key(|&(i, len)| (len, i))?;
        if len == 0 {
            return None;
        }
        self.entries.remove(best)
    }

    /// Drops the oldest entry (its pages go back to their pool); `false`
    /// when there was none.
    pub fn evict_oldest(&mut self) -> bool {
        self.entries.pop_front().is_some()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use servebench_engine::synthetic::{parse_quant, preset, write_model, VocabKind};
    use servebench_engine::{Engine, SeqStep};

    #[test]
    fn takes_the_longest_shared_prefix_and_evicts_the_oldest() {
        let path = std::env::temp_dir().join(format!("prefix-cache-{}.gguf", std::process::id()));
        let tiny = preset("tiny").unwrap();
        write_model(tiny, parse_quant("q8_0").unwrap(), VocabKind::Bpe, 1, &path).unwrap();
        let engine = Engine::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let cache_of = |tokens: &[u32]| {
            let mut c = engine.model.new_cache();
            engine
                .model
                .forward(&mut [SeqStep::new(tokens, &mut c)])
                .unwrap();
            c
        };
        let per = cache_of(&[1, 2, 3]).bytes();
        let mut p = PrefixCache::new(3 * per);
        p.put(vec![1, 2, 3], cache_of(&[1, 2, 3]));
        p.put(vec![1, 2, 9], cache_of(&[1, 2, 9]));
        p.put(vec![7, 8, 9], cache_of(&[7, 8, 9]));
        assert!(p.take(&[5, 5]).is_none(), "nothing shares a first token");
        let (tokens, cache) = p.take(&[1, 2, 9, 4]).unwrap();
        assert_eq!((tokens.as_slice(), cache.len()), ([1, 2, 9].as_slice(), 3));
        p.put(vec![1, 2, 9], cache);
        p.put(vec![4, 4, 4], cache_of(&[4, 4, 4]));
        assert_eq!(p.len(), 3, "the budget holds three");
        let (tokens, _) = p.take(&[1, 2, 3]).unwrap();
        assert_eq!(
            tokens,
            vec![1, 2, 9],
            "the oldest entry, [1, 2, 3], was evicted"
        );
        assert_eq!(p.take(&[7]).unwrap().0, vec![7, 8, 9]);
        let mut off = PrefixCache::new(0);
        off.put(vec![1, 2, 3], cache_of(&[1, 2, 3]));
        assert_eq!(off.len(), 0, "a zero budget keeps nothing");
    }
}
