//! A small open-addressing string table: the hash lookups behind host groups, exact paths and trie
//! edges.
//!
//! Keys are `(tag, &str)`: the tag namespaces one table for many owners (a trie node id for its
//! children, a host group id for its exact paths). Lookups never allocate and never hash twice. The
//! table is filled once at build time from configuration, so a fixed (non-random) hash is fine:
//! request data only ever looks keys up, it cannot insert, and the probe lengths are bounded by the
//! table's own contents.

/// Marks an empty slot.
const EMPTY: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Slot {
    hash: u64,
    tag: u32,
    value: u32,
    start: usize,
    len: usize,
}

const EMPTY_SLOT: Slot = Slot { hash: 0, tag: 0, value: EMPTY, start: 0, len: 0 };

/// An immutable `(tag, key) -> u32` map; optionally ASCII-case-insensitive (hosts).
pub(crate) struct StrTable {
    slots: Vec<Slot>,
    keys: String,
    mask: usize,
    fold_case: bool,
}

impl StrTable {
    /// Builds the table. Keys must be unique per tag; for a case-folding table they must be given
    /// in lowercase.
    pub(crate) fn build(entries: Vec<(u32, String, u32)>, fold_case: bool) -> StrTable {
        if entries.is_empty() {
            return StrTable { slots: Vec::new(), keys: String::new(), mask: 0, fold_case };
        }
        // Load factor at most 1/2 keeps linear probing short.
        let cap = (entries.len() * 2).next_power_of_two().max(8);
        let mut slots = vec![EMPTY_SLOT; cap];
        let mut keys = String::with_capacity(entries.iter().map(|e| e.1.len()).sum());
        let mask = cap - 1;
        for (tag, key, value) in entries {
            let hash = hash(tag, key.as_bytes(), fold_case);
            let start = keys.len();
            keys.push_str(&key);
            let mut i = (hash as usize) & mask;
            while slots[i].value != EMPTY {
                i = (i + 1) & mask;
            }
            slots[i] = Slot { hash, tag, value, start, len: key.len() };
        }
        StrTable { slots, keys, mask, fold_case }
    }

    /// True when the table holds no keys (lets callers skip hashing entirely).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Looks `(tag, key)` up.
    #[inline]
    pub(crate) fn get(&self, tag: u32, key: &str) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let hash = hash(tag, key.as_bytes(), self.fold_case);
        let mut i = (hash as usize) & self.mask;
        loop {
            let slot = &self.slots[i];
            if slot.value == EMPTY {
                return None;
            }
            if slot.hash == hash && slot.tag == tag && slot.len == key.len() {
                let stored = &self.keys.as_bytes()[slot.start..slot.start + slot.len];
                let equal = if self.fold_case {
                    stored.eq_ignore_ascii_case(key.as_bytes())
                } else {
                    same(stored, key.as_bytes())
                };
                if equal {
                    return Some(slot.value);
                }
            }
            i = (i + 1) & self.mask;
        }
    }
}

/// Equality of two equally long byte strings, word by word: keys are short, and a call to `memcmp`
/// costs more than the comparison itself.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    for (p, q) in (&mut x).zip(&mut y) {
        if p.iter().zip(q).fold(0, |acc, (c, d)| acc | (c ^ d)) != 0 {
            return false;
        }
    }
    x.remainder().iter().zip(y.remainder()).all(|(c, d)| c == d)
}

/// An Fx-style multiply-rotate hash over 8-byte words (the tail is one more word), with a final
/// avalanche so the low bits (used as the slot index) are well mixed. Case folding lowercases ASCII
/// letters word by word.
#[inline]
fn hash(tag: u32, key: &[u8], fold_case: bool) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = u64::from(tag).wrapping_mul(K) ^ (key.len() as u64);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        h = (h.rotate_left(5) ^ fold(read8(c), fold_case)).wrapping_mul(K);
    }
    let tail = chunks.remainder();
    let n = tail.len();
    if n > 0 {
        // The tail as one word without a byte loop: the last 8 bytes of the key (overlapping the
        // previous word) when the key is long enough, otherwise overlapping 4- or 1-byte
        // reads. The length is already mixed in.
        let w = if key.len() >= 8 {
            read8(&key[key.len() - 8..])
        } else if n >= 4 {
            read4(tail) | (read4(&tail[n - 4..]) << 32)
        } else {
            u64::from(tail[0]) | (u64::from(tail[n / 2]) << 8) | (u64::from(tail[n - 1]) << 16)
        };
        h = (h.rotate_left(5) ^ fold(w, fold_case)).wrapping_mul(K);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

#[inline]
fn read8(b: &[u8]) -> u64 {
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[inline]
fn read4(b: &[u8]) -> u64 {
    u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// ASCII-lowercases the eight bytes of `w` at once when `fold_case` (SWAR: finds the bytes in
/// `A..=Z` and sets their `0x20` bit; bytes `>= 0x80` are left alone).
#[inline]
fn fold(w: u64, fold_case: bool) -> u64 {
    if !fold_case {
        return w;
    }
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = w & !HIGH;
    let at_least_a = low7 + ONES * (0x80 - u64::from(b'A'));
    let above_z = low7 + ONES * (0x80 - u64::from(b'Z') - 1);
    let upper = at_least_a & !above_z & !w & HIGH;
    w | (upper >> 2)
}

#[cfg(test)]
mod tests {
    use super::StrTable;

    #[test]
    fn finds_every_key_and_nothing_else() {
        let entries: Vec<_> = (0..1000u32).map(|i| (i % 7, format!("seg{i}"), i)).collect();
        let t = StrTable::build(entries, false);
        for i in 0..1000u32 {
            assert_eq!(t.get(i % 7, &format!("seg{i}")), Some(i));
            assert_eq!(t.get((i + 1) % 7, &format!("seg{i}")), None);
        }
        assert_eq!(t.get(0, "nope"), None);
        assert_eq!(t.get(0, "SEG0"), None);
    }

    #[test]
    fn folds_ascii_case_when_asked() {
        let t = StrTable::build(vec![(0, "api.example.com".into(), 3)], true);
        assert_eq!(t.get(0, "API.Example.COM"), Some(3));
        assert_eq!(t.get(0, "api.example.co"), None);
    }

    #[test]
    fn word_folding_lowercases_exactly_the_ascii_capitals() {
        for b in 0..=255u8 {
            let w = u64::from_le_bytes([b, b'A', b'z', b'@', b'[', b'Z', 0x80 | b'A', b]);
            let want: Vec<u8> =
                w.to_le_bytes().iter().map(|&c| if c.is_ascii_uppercase() { c + 32 } else { c }).collect();
            assert_eq!(super::fold(w, true).to_le_bytes().to_vec(), want, "byte {b:#x}");
        }
    }

    #[test]
    fn empty_table_finds_nothing() {
        let t = StrTable::build(Vec::new(), false);
        assert!(t.is_empty());
        assert_eq!(t.get(0, ""), None);
    }
}
