//! The KV budget (`--max-batch-total-tokens`) when none is given. TGI
//! measures the GPU memory left after loading the weights and fills a
//! fraction of it with KV blocks; here the memory left is the kernel's
//! estimate of what can be allocated without swapping (`MemAvailable`), or
//! less when a container's memory limit is nearer, measured after the
//! weights are loaded.

use std::path::Path;

use servebench_engine::kv_cache::{KvShape, PAGE_POSITIONS};

/// Share of the available memory the derived budget uses by default: the
/// rest is left for request buffers, the per-step activations and the
/// other processes of the machine.
pub const DEFAULT_MEMORY_FRACTION: f64 = 0.8;

/// A budget derived from memory, with what it came from (for the log).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DerivedBudget {
    /// Positions of KV cache, a whole number of pages.
    pub tokens: usize,
    /// The memory measured as available, in bytes.
    pub available_bytes: u64,
    /// Whether `cap_tokens` (not memory) set the budget.
    pub capped: bool,
}

/// Bytes that can be allocated now: `MemAvailable`, or the room left under
/// the cgroup (v2) memory limit when that is smaller. `None` off Linux.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available = mem_available(&meminfo)?;
    let cgroup = Path::new("/sys/fs/cgroup");
    let read = |name: &str| std::fs::read_to_string(cgroup.join(name)).ok();
    let room = match (read("memory.max"), read("memory.current")) {
        (Some(max), Some(current)) => cgroup_room(&max, &current),
        _ => None,
    };
    Some(room.map_or(available, |r| r.min(available)))
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What a cgroup may still allocate: `memory.max` ("max": no limit) less
/// `memory.current`.
fn cgroup_room(max: &str, current: &str) -> Option<u64> {
    let max: u64 = max.trim().parse().ok()?;
    let current: u64 = current.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

/// `fraction` of `available_bytes` as KV positions of `shape`, at most
/// `cap_tokens` (no batch can use more than the concurrent requests' total
/// tokens), rounded down to whole pages.
pub fn derive(
    available_bytes: u64,
    fraction: f64,
    shape: KvShape,
    cap_tokens: usize,
) -> DerivedBudget {
    let from_memory = (available_bytes as f64 * fraction) as u64 / shape.bytes_per_token() as u64;
    let from_memory = usize::try_from(from_memory).unwrap_or(usize::MAX);
    let tokens = from_memory.min(cap_tokens);
    DerivedBudget {
        tokens: tokens - tokens % PAGE_POSITIONS,
        available_bytes,
        capped: cap_tokens < from_memory,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_a_fraction_of_available_memory_in_whole_pages_capped() {
        let meminfo =
            "MemTotal:       24576000 kB\nMemFree:  1000 kB\nMemAvailable:   1048576 kB\n";
        let available = mem_available(meminfo).unwrap();
        assert_eq!(available, 1 << 30);
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
        // SmolLM2-135M: 30 layers of 192 key values, 23040 bytes a token.
        let shape = KvShape {
            n_layer: 30,
            kv_dim: 192,
        };
        let b = derive(available, 0.5, shape, usize::MAX);
        // 0.5 GiB / 23040 B = 23301.69 tokens; whole pages: 23296.
        assert_eq!((b.tokens, b.capped), (23296, false));
        let b = derive(available, 0.5, shape, 8 * 2048);
        assert_eq!((b.tokens, b.capped), (16384, true));
        assert_eq!(cgroup_room("max\n", "100\n"), None);
        assert_eq!(cgroup_room("1000\n", "100\n"), Some(900));
    }
}
