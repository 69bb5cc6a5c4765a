//! Per-sequence key/value cache: for every layer, the keys and values of all
//! positions so far, stored as f16 (llama.cpp's default cache type).

use half::f16;
use half::slice::HalfFloatSliceExt;

/// One layer's cached keys and values, `[positions, kv_dim]` each.
#[derive(Debug, Clone, Default)]
pub struct LayerKv {
    k: Vec<f16>,
    v: Vec<f16>,
}

/// The cache of one sequence.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    kv_dim: usize,
    len: usize,
}

impl KvCache {
    /// An empty cache for a model with `n_layer` layers of `kv_dim` keys.
    pub fn new(n_layer: usize, kv_dim: usize) -> Self {
        Self {
            layers: vec![LayerKv::default(); n_layer],
            kv_dim,
            len: 0,
        }
    }

    /// Positions stored (committed by [`KvCache::commit`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets everything, keeping the memory.
    pub fn clear(&mut self) {
        for l in &mut self.layers {
            l.k.clear();
            l.v.clear();
        }
        self.len = 0;
    }

    /// Bytes held by the cache.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.k.capacity() + l.v.capacity()) * 2)
            .sum()
    }

    /// Appends keys and values (`[n, kv_dim]` each) to `layer`, beyond the
    /// committed length.
    pub(crate) fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        let l = &mut self.layers[layer];
        let start = l.k.len();
        l.k.resize(start + k.len(), f16::ZERO);
        l.k[start..].convert_from_f32_slice(k);
        l.v.resize(start + v.len(), f16::ZERO);
        l.v[start..].convert_from_f32_slice(v);
    }

    /// Keys and values of `layer` for positions `0..upto`.
    pub(crate) fn layer(&self, layer: usize, upto: usize) -> (&[f16], &[f16]) {
        let l = &self.layers[layer];
        let n = upto * self.kv_dim;
        (&l.k[..n], &l.v[..n])
    }

    /// Makes `n` appended positions part of the sequence.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
        debug_assert!(self
            .layers
            .iter()
            .all(|l| l.k.len() == self.len * self.kv_dim));
    }

    /// Keeps only the first `n` committed positions (a cached prefix reused
    /// by a new sequence).
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
        self.rollback();
    }

    /// Drops positions appended but not committed (a failed step).
    pub(crate) fn rollback(&mut self) {
        let n = self.len * self.kv_dim;
        for l in &mut self.layers {
            l.k.truncate(n);
            l.v.truncate(n);
        }
    }
}
