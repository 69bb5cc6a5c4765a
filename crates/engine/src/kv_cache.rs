//! Key/value caches in fixed-size pages of positions, stored as f16
//! (llama.cpp's default cache type).
//!
//! A page holds [`PAGE_POSITIONS`] positions of every layer's keys and
//! values. A cache is a list of pages, so it never reallocates as its
//! sequence grows (a growing `Vec` doubles, and the allocator keeps the
//! holes: about twice the memory the positions need). Pages come either
//! from the heap (a cache used alone) or from a [`KvPool`], which holds a
//! server's whole KV budget: a sequence reserves the pages its prompt and
//! its longest generation need when it is admitted, takes them as it grows,
//! and gives them back to the pool's free list when it ends, so the memory
//! is reused, never more than the budget, rather than handed back to the
//! allocator (vLLM's and TGI's paged attention, on the CPU).

use std::sync::{Arc, Mutex, MutexGuard};

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::error::{EngineError, Result};

/// Positions per page (vLLM's and TGI's default block size): a sequence
/// wastes at most 15 positions, and attention reads 16 positions
/// contiguously per page.
pub const PAGE_POSITIONS: usize = 16;

/// Pages that hold `tokens` positions.
pub fn pages_for(tokens: usize) -> usize {
    tokens.div_ceil(PAGE_POSITIONS)
}

/// One page: for each layer, keys then values, `[PAGE_POSITIONS, kv_dim]`
/// each.
type Page = Box<[f16]>;

/// What a model's cache holds per position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvShape {
    pub n_layer: usize,
    /// Key (and value) values per position and layer.
    pub kv_dim: usize,
}

impl KvShape {
    /// Bytes one position takes: keys and values of every layer, f16.
    pub fn bytes_per_token(self) -> usize {
        2 * self.n_layer * self.kv_dim * std::mem::size_of::<f16>()
    }

    /// Bytes one page takes.
    pub fn page_bytes(self) -> usize {
        self.bytes_per_token() * PAGE_POSITIONS
    }

    fn page_values(self) -> usize {
        2 * self.n_layer * PAGE_POSITIONS * self.kv_dim
    }

    /// Where `layer`'s keys (`kind` 0) or values (1) start in a page.
    fn offset(self, layer: usize, kind: usize) -> usize {
        (2 * layer + kind) * PAGE_POSITIONS * self.kv_dim
    }

    fn new_page(self) -> Page {
        vec![f16::ZERO; self.page_values()].into_boxed_slice()
    }
}

/// A server's KV memory: at most `capacity` pages, allocated the first time
/// they are needed and reused from then on.
#[derive(Debug)]
pub struct KvPool {
    shape: KvShape,
    capacity: usize,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Allocated pages no cache holds.
    free: Vec<Page>,
    /// Pages allocated so far (held by caches or free).
    allocated: usize,
    /// Pages promised to caches (held or still to take).
    reserved: usize,
    /// Most pages ever reserved at once.
    peak_reserved: usize,
}

/// A pool's counters, in tokens (pages x [`PAGE_POSITIONS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolUsage {
    /// What the pool may hold.
    pub capacity_tokens: usize,
    /// Promised to caches: what admission counts against the capacity.
    pub reserved_tokens: usize,
    /// The most ever promised at once.
    pub peak_reserved_tokens: usize,
    /// Pages caches hold now.
    pub used_tokens: usize,
    /// Memory the pool has allocated (held or free), in bytes.
    pub allocated_bytes: usize,
}

impl KvPool {
    /// A pool for `budget_tokens` positions (rounded up to whole pages).
    /// Nothing is allocated until caches take pages.
    pub fn new(shape: KvShape, budget_tokens: usize) -> Arc<Self> {
        Arc::new(Self {
            shape,
            capacity: pages_for(budget_tokens),
            state: Mutex::new(PoolState::default()),
        })
    }

    pub fn shape(&self) -> KvShape {
        self.shape
    }

    fn state(&self) -> MutexGuard<'_, PoolState> {
        // A panic elsewhere cannot leave the counters half-updated (every
        // update is a single statement), so a poisoned lock is still sound.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pool's counters now.
    pub fn usage(&self) -> PoolUsage {
        let s = self.state();
        PoolUsage {
            capacity_tokens: self.capacity * PAGE_POSITIONS,
            reserved_tokens: s.reserved * PAGE_POSITIONS,
            peak_reserved_tokens: s.peak_reserved * PAGE_POSITIONS,
            used_tokens: (s.allocated - s.free.len()) * PAGE_POSITIONS,
            allocated_bytes: s.allocated * self.shape.page_bytes(),
        }
    }

    /// An empty cache with room for `tokens` positions set aside, or `None`
    /// when the pool's free room is smaller.
    pub fn reserve(self: &Arc<Self>, tokens: usize) -> Option<KvCache> {
        let pages = pages_for(tokens);
        let mut s = self.state();
        if s.reserved + pages > self.capacity {
            return None;
        }
        s.reserved += pages;
        s.peak_reserved = s.peak_reserved.max(s.reserved);
        drop(s);
        Some(KvCache {
            shape: self.shape,
            pages: Vec::with_capacity(pages),
            len: 0,
            source: Source::Pool {
                pool: self.clone(),
                reserved: pages,
            },
        })
    }

    /// A page for a cache within its reservation: a free one, else a new one
    /// (the reservations' sum never exceeds the capacity, so neither does
    /// the number allocated).
    fn take(&self) -> Page {
        let mut s = self.state();
        if let Some(p) = s.free.pop() {
            return p;
        }
        s.allocated += 1;
        drop(s);
        self.shape.new_page()
    }

    fn give_back(&self, pages: impl Iterator<Item = Page>) {
        self.state().free.extend(pages);
    }

    fn release(&self, pages: usize) {
        self.state().reserved -= pages;
    }
}

/// Where a cache's pages come from and go back to.
#[derive(Debug)]
enum Source {
    Heap,
    /// `reserved` pages of `pool` are this cache's (held or to take).
    Pool {
        pool: Arc<KvPool>,
        reserved: usize,
    },
}

/// The cache of one sequence.
#[derive(Debug)]
pub struct KvCache {
    shape: KvShape,
    pages: Vec<Page>,
    len: usize,
    source: Source,
}

/// One layer's keys (or values) of a cache, position by position.
#[derive(Clone, Copy)]
pub struct KvRows<'a> {
    pages: &'a [Page],
    offset: usize,
    kv_dim: usize,
}

impl<'a> KvRows<'a> {
    /// Rows laid out as a cache's pages hold them, starting at `offset`.
    /// Every page of a cache has the same length, so checking the first
    /// one keeps [`KvRows::row_ptr`] within every page.
    pub(crate) fn new(pages: &'a [Page], offset: usize, kv_dim: usize) -> Self {
        assert!(pages
            .first()
            .is_none_or(|p| offset + PAGE_POSITIONS * kv_dim <= p.len()));
        Self {
            pages,
            offset,
            kv_dim,
        }
    }

    /// The `kv_dim` values of position `p`.
    #[inline(always)]
    pub fn row(&self, p: usize) -> &'a [f16] {
        let start = self.offset + (p % PAGE_POSITIONS) * self.kv_dim;
        &self.pages[p / PAGE_POSITIONS][start..start + self.kv_dim]
    }

    /// Where position `p`'s `kv_dim` values start, without bounds checks
    /// (the attention kernels' inner loops visit every position).
    ///
    /// # Safety
    /// `p < self.capacity()`.
    #[inline(always)]
    pub unsafe fn row_ptr(&self, p: usize) -> *const f16 {
        // SAFETY: p / PAGE_POSITIONS < pages.len() by the caller's promise;
        // the row lies within the page by the check in `new`.
        unsafe {
            let page = self.pages.get_unchecked(p / PAGE_POSITIONS);
            page.as_ptr()
                .add(self.offset + (p % PAGE_POSITIONS) * self.kv_dim)
        }
    }

    /// Positions the pages have room for.
    pub fn capacity(&self) -> usize {
        self.pages.len() * PAGE_POSITIONS
    }
}

impl KvCache {
    /// An empty cache, its pages from the heap, for a model with `n_layer`
    /// layers of `kv_dim` keys.
    pub fn new(n_layer: usize, kv_dim: usize) -> Self {
        Self {
            shape: KvShape { n_layer, kv_dim },
            pages: Vec::new(),
            len: 0,
            source: Source::Heap,
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

    /// Forgets everything, keeping the pages.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Bytes of the pages held.
    pub fn bytes(&self) -> usize {
        self.pages.len() * self.shape.page_bytes()
    }

    /// Positions this cache may reach: its pool reservation, or no limit.
    pub fn reserved_tokens(&self) -> usize {
        match &self.source {
            Source::Heap => usize::MAX,
            Source::Pool { reserved, .. } => reserved * PAGE_POSITIONS,
        }
    }

    /// Takes the pages that `positions` positions need. A pooled cache
    /// stays within its reservation.
    pub(crate) fn make_room(&mut self, positions: usize) -> Result<()> {
        let needed = pages_for(positions);
        while self.pages.len() < needed {
            let page = match &self.source {
                Source::Heap => self.shape.new_page(),
                Source::Pool { pool, reserved } => {
                    if self.pages.len() >= *reserved {
                        return Err(EngineError::KvReservation {
                            needed: positions,
                            reserved: reserved * PAGE_POSITIONS,
                        });
                    }
                    pool.take()
                }
            };
            self.pages.push(page);
        }
        Ok(())
    }

    /// Writes keys and values (`[n, kv_dim]` each) of `layer` at the
    /// positions after the committed ones ([`KvCache::make_room`] first).
    pub(crate) fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        let d = self.shape.kv_dim;
        for (kind, src) in [k, v].into_iter().enumerate() {
            let offset = self.shape.offset(layer, kind);
            for (i, row) in src.chunks_exact(d).enumerate() {
                let p = self.len + i;
                let start = offset + (p % PAGE_POSITIONS) * d;
                self.pages[p / PAGE_POSITIONS][start..start + d].convert_from_f32_slice(row);
            }
        }
    }

    /// Keys and values of `layer`; positions `0..len` plus any appended.
    pub(crate) fn layer(&self, layer: usize) -> (KvRows<'_>, KvRows<'_>) {
        let rows = |kind| {
            KvRows::new(
                &self.pages,
                self.shape.offset(layer, kind),
                self.shape.kv_dim,
            )
        };
        (rows(0), rows(1))
    }

    /// Makes `n` appended positions part of the sequence.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
        debug_assert!(self.len <= self.pages.len() * PAGE_POSITIONS);
    }

    /// Keeps only the first `n` committed positions (a cached prefix reused
    /// by a new sequence); pages past them go back.
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
        let keep = pages_for(self.len);
        if self.pages.len() > keep {
            let gone = self.pages.drain(keep..);
            if let Source::Pool { pool, .. } = &self.source {
                pool.give_back(gone);
            }
        }
    }

    /// Gives back the part of a pool reservation no page fills (a finished
    /// sequence kept for its prefix holds only what it stored).
    pub fn shrink_to_fit(&mut self) {
        self.truncate(self.len);
        if let Source::Pool { pool, reserved } = &mut self.source {
            pool.release(*reserved - self.pages.len());
            *reserved = self.pages.len();
        }
    }

    /// Starts this empty cache from the first `n` positions of `other`:
    /// its pages move over when both draw from the same place (no copy),
    /// else they are copied. `other`'s reservation is given back.
    pub fn adopt_prefix(&mut self, mut other: KvCache, n: usize) -> Result<()> {
        debug_assert!(self.is_empty() && self.shape == other.shape);
        other.truncate(n);
        let same = match (&self.source, &other.source) {
            (Source::Heap, Source::Heap) => true,
            (Source::Pool { pool: a, .. }, Source::Pool { pool: b, .. }) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if same {
            if other.pages.len() > pages_for(self.reserved_tokens()) {
                return Err(EngineError::KvReservation {
                    needed: other.len,
                    reserved: self.reserved_tokens(),
                });
            }
            let mine = std::mem::replace(&mut self.pages, std::mem::take(&mut other.pages));
            if let Source::Pool { pool, .. } = &self.source {
                pool.give_back(mine.into_iter());
            }
        } else {
            self.make_room(other.len)?;
            for (mine, theirs) in self.pages.iter_mut().zip(&other.pages) {
                mine.copy_from_slice(theirs);
            }
        }
        self.len = other.len;
        Ok(())
    }
}

/// A copy whose pages come from the heap, whatever the original's source.
impl Clone for KvCache {
    fn clone(&self) -> Self {
        Self {
            shape: self.shape,
            pages: self.pages.clone(),
            len: self.len,
            source: Source::Heap,
        }
    }
}

impl Drop for KvCache {
    fn drop(&mut self) {
        if let Source::Pool { pool, reserved } = &self.source {
            pool.give_back(self.pages.drain(..));
            pool.release(*reserved);
        }
    }
}

/// `values` (`[positions, kv_dim]`, contiguous) split into pages as a
/// cache's keys of layer 0 are laid out, for kernels' tests.
#[cfg(test)]
pub(crate) fn paged(values: &[f16], kv_dim: usize) -> Vec<Page> {
    values
        .chunks(PAGE_POSITIONS * kv_dim)
        .map(|c| {
            let mut page = vec![f16::ZERO; PAGE_POSITIONS * kv_dim];
            page[..c.len()].copy_from_slice(c);
            page.into_boxed_slice()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: KvShape = KvShape {
        n_layer: 2,
        kv_dim: 4,
    };

    fn fill(c: &mut KvCache, n: usize, base: f32) {
        let start = c.len();
        c.make_room(start + n).unwrap();
        for layer in 0..SHAPE.n_layer {
            let k: Vec<f32> = (0..n * 4)
                .map(|i| base + (layer * 1000 + i) as f32)
                .collect();
            let v: Vec<f32> = k.iter().map(|x| -x).collect();
            c.append(layer, &k, &v);
        }
        c.commit(n);
    }

    #[test]
    fn rows_read_back_across_pages_for_every_layer() {
        let mut c = KvCache::new(SHAPE.n_layer, SHAPE.kv_dim);
        fill(&mut c, 20, 0.0);
        fill(&mut c, 1, 100.0);
        assert_eq!((c.len(), c.bytes()), (21, 2 * SHAPE.page_bytes()));
        let (k, v) = c.layer(1);
        assert_eq!(k.row(17)[2].to_f32(), (1000 + 17 * 4 + 2) as f32);
        assert_eq!(v.row(20)[0].to_f32(), -(100.0 + 1000.0));
        assert_eq!(k.capacity(), 32);
    }

    #[test]
    fn a_pool_admits_within_its_pages_and_reuses_them() {
        let pool = KvPool::new(SHAPE, 40); // 3 pages
        let mut a = pool.reserve(20).expect("2 pages fit");
        assert!(pool.reserve(17).is_none(), "2 more pages do not");
        let b = pool.reserve(16).expect("1 page fits");
        fill(&mut a, 20, 0.0);
        let u = pool.usage();
        assert_eq!((u.reserved_tokens, u.used_tokens), (48, 32));
        assert_eq!(u.allocated_bytes, 2 * SHAPE.page_bytes());
        let err = a.make_room(33).unwrap_err();
        assert!(matches!(err, EngineError::KvReservation { .. }), "{err}");
        drop(a);
        drop(b);
        let u = pool.usage();
        assert_eq!(
            (u.reserved_tokens, u.used_tokens, u.peak_reserved_tokens),
            (0, 0, 48)
        );
        let mut c = pool.reserve(48).expect("all pages are free again");
        fill(&mut c, 48, 0.0);
        assert_eq!(
            pool.usage().allocated_bytes,
            3 * SHAPE.page_bytes(),
            "two pages reused, one new"
        );
    }

    #[test]
    fn a_kept_prefix_holds_only_its_pages_and_moves_to_the_next_sequence() {
        let pool = KvPool::new(SHAPE, 64);
        let mut done = pool.reserve(64).unwrap();
        fill(&mut done, 40, 7.0);
        done.shrink_to_fit();
        assert_eq!(pool.usage().reserved_tokens, 48, "3 pages kept");
        let mut small = pool.reserve(16).unwrap();
        small.adopt_prefix(done, 17).unwrap_err();
        drop(small);
        assert_eq!(pool.usage().reserved_tokens, 0, "both gave everything back");
        let mut next = pool.reserve(32).unwrap();
        let mut done = pool.reserve(32).unwrap();
        fill(&mut done, 30, 7.0);
        next.adopt_prefix(done, 17).unwrap();
        assert_eq!(next.len(), 17);
        assert_eq!(
            next.layer(0).0.row(16)[1].to_f32(),
            7.0 + (16 * 4 + 1) as f32
        );
        assert_eq!(
            pool.usage().reserved_tokens,
            32,
            "the prefix's own reservation is back"
        );
        let mut heap = KvCache::new(SHAPE.n_layer, SHAPE.kv_dim);
        heap.adopt_prefix(next.clone(), 17).unwrap();
        assert_eq!(heap.layer(1).1.row(3)[0], next.layer(1).1.row(3)[0]);
    }
}
