// Copyright (c) 2024-present, fjall-rs
// This source code is licensed under both the Apache 2.0 and MIT License
// (found in the LICENSE-* files in the repository)

use crate::key::InternalKey;
use crate::{
    value::{InternalValue, SeqNo, UserValue},
    ValueType,
};
use crossbeam_skiplist::SkipMap;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicBool, AtomicU64};

pub use crate::tree::inner::MemtableId;

/// The memtable serves as an intermediary, ephemeral, sorted storage for new items
///
/// When the Memtable exceeds some size, it should be flushed to a table.
pub struct Memtable {
    #[doc(hidden)]
    pub id: MemtableId,

    /// The actual content, stored in a lock-free skiplist.
    #[doc(hidden)]
    pub items: SkipMap<InternalKey, UserValue>,

    /// Approximate active memtable size.
    ///
    /// If this grows too large, a flush is triggered.
    pub(crate) approximate_size: AtomicU64,

    /// Highest encountered sequence number.
    ///
    /// This is used so that `get_highest_seqno` has O(1) complexity.
    pub(crate) highest_seqno: AtomicU64,

    pub(crate) requested_rotation: AtomicBool,

    /// vigie patch: which keys may be in `items` (`None`: no filter, upstream's behaviour).
    filter: Option<Filter>,
}

/// vigie patch: a blocked Bloom filter over a memtable's user keys, filled as items are
/// inserted (concurrently: bits are only ever set). Each key sets 4 bits of one 64-bit
/// word, so a check reads one cache line.
struct Filter {
    words: Box<[AtomicU64]>,
    /// `words.len() - 1` (a power of two).
    mask: u64,
}

impl Filter {
    fn new(bits: u64) -> Self {
        let words = (bits.div_ceil(64)).max(1).next_power_of_two();
        Self {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            mask: words - 1,
        }
    }

    /// The word and the 4 bits of a key's hash.
    fn slot(&self, hash: u64) -> (usize, u64) {
        // The low bits choose the word, the top 24 the bits in it.
        #[expect(clippy::cast_possible_truncation, reason = "masked to the table's size")]
        let word = (hash & self.mask) as usize;
        let bits = (1u64 << (hash >> 58))
            | (1u64 << ((hash >> 52) & 63))
            | (1u64 << ((hash >> 46) & 63))
            | (1u64 << ((hash >> 40) & 63));
        (word, bits)
    }

    fn insert(&self, key_hash: u64) {
        let (word, bits) = self.slot(key_hash);
        if let Some(w) = self.words.get(word) {
            w.fetch_or(bits, std::sync::atomic::Ordering::Release);
        }
    }

    fn may_contain(&self, key_hash: u64) -> bool {
        let (word, bits) = self.slot(key_hash);
        self.words
            .get(word)
            .is_none_or(|w| w.load(std::sync::atomic::Ordering::Acquire) & bits == bits)
    }
}

impl Memtable {
    /// Returns the memtable ID.
    pub fn id(&self) -> MemtableId {
        self.id
    }

    /// Returns `true` if the memtable was already flagged for rotation.
    pub fn is_flagged_for_rotation(&self) -> bool {
        self.requested_rotation
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Flags the memtable as requested for rotation.
    pub fn flag_rotated(&self) {
        self.requested_rotation
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    #[doc(hidden)]
    #[must_use]
    pub fn new(id: MemtableId) -> Self {
        Self {
            id,
            items: SkipMap::default(),
            approximate_size: AtomicU64::default(),
            highest_seqno: AtomicU64::default(),
            requested_rotation: AtomicBool::default(),
            filter: None,
        }
    }

    /// vigie patch: a memtable whose point reads first ask a filter of `bits` bits
    /// (rounded up to a power of two; 0: no filter, as [`Memtable::new`]) whether the key
    /// can be in it at all. Every insert sets the key's bits before the item is linked in,
    /// so a read that finds the item also finds its bits.
    #[doc(hidden)]
    #[must_use]
    pub fn with_filter(id: MemtableId, bits: u64) -> Self {
        let mut memtable = Self::new(id);
        if bits > 0 {
            memtable.filter = Some(Filter::new(bits));
        }
        memtable
    }

    /// Creates an iterator over all items.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = InternalValue> + '_ {
        self.items.iter().map(|entry| InternalValue {
            key: entry.key().clone(),
            value: entry.value().clone(),
        })
    }

    /// Creates an iterator over a range of items.
    pub(crate) fn range<'a, R: RangeBounds<InternalKey> + 'a>(
        &'a self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = InternalValue> + 'a {
        self.items.range(range).map(|entry| InternalValue {
            key: entry.key().clone(),
            value: entry.value().clone(),
        })
    }

    /// Returns the item by key if it exists.
    ///
    /// The item with the highest seqno will be returned, if `seqno` is None.
    #[doc(hidden)]
    pub fn get(&self, key: &[u8], seqno: SeqNo) -> Option<InternalValue> {
        // vigie patch: the key's hash only where a filter needs it.
        let key_hash = if self.filter.is_some() {
            crate::hash::hash64(key)
        } else {
            0
        };
        self.get_with_hash(key, seqno, key_hash)
    }

    /// vigie patch: [`Memtable::get`] with the key's hash (`crate::hash::hash64`, the
    /// tables' filters' hash too), computed once per tree read.
    pub(crate) fn get_with_hash(
        &self,
        key: &[u8],
        seqno: SeqNo,
        key_hash: u64,
    ) -> Option<InternalValue> {
        if seqno == 0 {
            return None;
        }

        // vigie patch: most reads of a store of new keys end here.
        if self.filter.as_ref().is_some_and(|f| !f.may_contain(key_hash)) {
            return None;
        }

        // NOTE: This range start deserves some explanation...
        // InternalKeys are multi-sorted by 2 categories: user_key and Reverse(seqno). (tombstone doesn't really matter)
        // We search for the lowest entry that is greater or equal the user's prefix key
        // and has the seqno (or lower) we want (because the seqno is stored in reverse order)
        //
        // Example: We search for "abc"
        //
        // key -> seqno
        //
        // a   -> 7
        // abc -> 5 <<< This is the lowest key (highest seqno) that matches the key with seqno=None
        // abc -> 4
        // abc -> 3 <<< If searching for abc and seqno=4, we would get this
        // abcdef -> 6
        // abcdef -> 5
        //
        let lower_bound = InternalKey::new(key, seqno - 1, ValueType::Value);

        let mut iter = self
            .items
            .range(lower_bound..)
            .take_while(|entry| &*entry.key().user_key == key);

        iter.next().map(|entry| InternalValue {
            key: entry.key().clone(),
            value: entry.value().clone(),
        })
    }

    /// Gets approximate size of memtable in bytes.
    pub fn size(&self) -> u64 {
        self.approximate_size
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Counts the number of items in the memtable.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Returns `true` if the memtable is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Inserts an item into the memtable
    #[doc(hidden)]
    pub fn insert(&self, item: InternalValue) -> (u64, u64) {
        #[expect(
            clippy::expect_used,
            reason = "keys are limited to 16-bit length + values are limited to 32-bit length"
        )]
        let item_size =
            (item.key.user_key.len() + item.value.len() + std::mem::size_of::<InternalValue>())
                .try_into()
                .expect("should fit into u64");

        let size_before = self
            .approximate_size
            .fetch_add(item_size, std::sync::atomic::Ordering::AcqRel);

        // vigie patch: the filter's bits first (see `with_filter`).
        if let Some(filter) = &self.filter {
            filter.insert(crate::hash::hash64(&item.key.user_key));
        }

        let key = InternalKey::new(item.key.user_key, item.key.seqno, item.key.value_type);
        self.items.insert(key, item.value);

        self.highest_seqno
            .fetch_max(item.key.seqno, std::sync::atomic::Ordering::AcqRel);

        (item_size, size_before + item_size)
    }

    /// Returns the highest sequence number in the memtable.
    pub fn get_highest_seqno(&self) -> Option<SeqNo> {
        if self.is_empty() {
            None
        } else {
            Some(
                self.highest_seqno
                    .load(std::sync::atomic::Ordering::Acquire),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ValueType;
    use test_log::test;

    /// vigie patch: a filtered memtable finds every key it holds, at every seqno, and its
    /// filter turns away nearly all the others.
    #[test]
    #[expect(clippy::unwrap_used)]
    fn filtered_memtable_finds_every_key_and_skips_most_others() {
        let memtable = Memtable::with_filter(0, 1 << 16);
        assert!(memtable.filter.is_some());
        for i in 0..2_000u32 {
            memtable.insert(InternalValue::from_components(
                format!("key-{i}").into_bytes(),
                i.to_le_bytes(),
                u64::from(i) + 1,
                ValueType::Value,
            ));
        }
        for i in 0..2_000u32 {
            let key = format!("key-{i}");
            let item = memtable.get(key.as_bytes(), SeqNo::MAX).unwrap();
            assert_eq!(&*item.value, &i.to_le_bytes());
            // Not visible below its own seqno.
            assert_eq!(None, memtable.get(key.as_bytes(), u64::from(i) + 1));
        }
        let filter = memtable.filter.as_ref().unwrap();
        let passed = (0..100_000u32)
            .filter(|i| {
                let key = format!("other-{i}");
                assert_eq!(None, memtable.get(key.as_bytes(), SeqNo::MAX));
                filter.may_contain(crate::hash::hash64(key.as_bytes()))
            })
            .count();
        // 32 bits per key, 4 bits in one word: about 1 in 10,000 expected.
        assert!(passed < 100, "{passed} of 100,000 absent keys passed the filter");
        assert!(Memtable::with_filter(1, 0).filter.is_none());
    }

    /// vigie patch: every memtable a tree makes — its first, and each after a rotation —
    /// has the configured filter, and reads through sealed ones still find their keys.
    #[test]
    #[expect(clippy::unwrap_used)]
    fn a_tree_gives_each_memtable_its_filter() -> crate::Result<()> {
        use crate::{AbstractTree, Config, SequenceNumberCounter};
        let dir = tempfile::tempdir()?;
        let tree = Config::new(
            dir.path(),
            SequenceNumberCounter::default(),
            SequenceNumberCounter::default(),
        )
        .memtable_filter_bits(1 << 12)
        .open()?;
        assert!(tree.active_memtable().filter.is_some());
        tree.insert("a", "1", 0);
        tree.rotate_memtable().unwrap();
        assert!(tree.active_memtable().filter.is_some());
        tree.insert("b", "2", 1);
        assert_eq!(&*tree.get("a", SeqNo::MAX)?.unwrap(), b"1");
        assert_eq!(&*tree.get("b", SeqNo::MAX)?.unwrap(), b"2");
        assert_eq!(None, tree.get("c", SeqNo::MAX)?);
        let plain = Config::new(
            dir.path().join("plain"),
            SequenceNumberCounter::default(),
            SequenceNumberCounter::default(),
        )
        .open()?;
        assert!(plain.active_memtable().filter.is_none());
        Ok(())
    }

    #[test]
    #[expect(clippy::unwrap_used)]
    fn memtable_mvcc_point_read() {
        let memtable = Memtable::new(0);

        memtable.insert(InternalValue::from_components(
            *b"hello-key-999991",
            *b"hello-value-999991",
            0,
            ValueType::Value,
        ));

        let item = memtable.get(b"hello-key-99999", SeqNo::MAX);
        assert_eq!(None, item);

        let item = memtable.get(b"hello-key-999991", SeqNo::MAX);
        assert_eq!(*b"hello-value-999991", &*item.unwrap().value);

        memtable.insert(InternalValue::from_components(
            *b"hello-key-999991",
            *b"hello-value-999991-2",
            1,
            ValueType::Value,
        ));

        let item = memtable.get(b"hello-key-99999", SeqNo::MAX);
        assert_eq!(None, item);

        let item = memtable.get(b"hello-key-999991", SeqNo::MAX);
        assert_eq!((*b"hello-value-999991-2"), &*item.unwrap().value);

        let item = memtable.get(b"hello-key-99999", 1);
        assert_eq!(None, item);

        let item = memtable.get(b"hello-key-999991", 1);
        assert_eq!((*b"hello-value-999991"), &*item.unwrap().value);

        let item = memtable.get(b"hello-key-99999", 2);
        assert_eq!(None, item);

        let item = memtable.get(b"hello-key-999991", 2);
        assert_eq!((*b"hello-value-999991-2"), &*item.unwrap().value);
    }

    #[test]
    fn memtable_get() {
        let memtable = Memtable::new(0);

        let value =
            InternalValue::from_components(b"abc".to_vec(), b"abc".to_vec(), 0, ValueType::Value);

        memtable.insert(value.clone());

        assert_eq!(Some(value), memtable.get(b"abc", SeqNo::MAX));
    }

    #[test]
    fn memtable_get_highest_seqno() {
        let memtable = Memtable::new(0);

        memtable.insert(InternalValue::from_components(
            b"abc".to_vec(),
            b"abc".to_vec(),
            0,
            ValueType::Value,
        ));
        memtable.insert(InternalValue::from_components(
            b"abc".to_vec(),
            b"abc".to_vec(),
            1,
            ValueType::Value,
        ));
        memtable.insert(InternalValue::from_components(
            b"abc".to_vec(),
            b"abc".to_vec(),
            2,
            ValueType::Value,
        ));
        memtable.insert(InternalValue::from_components(
            b"abc".to_vec(),
            b"abc".to_vec(),
            3,
            ValueType::Value,
        ));
        memtable.insert(InternalValue::from_components(
            b"abc".to_vec(),
            b"abc".to_vec(),
            4,
            ValueType::Value,
        ));

        assert_eq!(
            Some(InternalValue::from_components(
                b"abc".to_vec(),
                b"abc".to_vec(),
                4,
                ValueType::Value,
            )),
            memtable.get(b"abc", SeqNo::MAX)
        );
    }

    #[test]
    fn memtable_get_prefix() {
        let memtable = Memtable::new(0);

        memtable.insert(InternalValue::from_components(
            b"abc0".to_vec(),
            b"abc".to_vec(),
            0,
            ValueType::Value,
        ));
        memtable.insert(InternalValue::from_components(
            b"abc".to_vec(),
            b"abc".to_vec(),
            255,
            ValueType::Value,
        ));

        assert_eq!(
            Some(InternalValue::from_components(
                b"abc".to_vec(),
                b"abc".to_vec(),
                255,
                ValueType::Value,
            )),
            memtable.get(b"abc", SeqNo::MAX)
        );

        assert_eq!(
            Some(InternalValue::from_components(
                b"abc0".to_vec(),
                b"abc".to_vec(),
                0,
                ValueType::Value,
            )),
            memtable.get(b"abc0", SeqNo::MAX)
        );
    }

    #[test]
    fn memtable_get_old_version() {
        let memtable = Memtable::new(0);

        memtable.insert(InternalValue::from_components(
            b"abc".to_vec(),
            b"abc".to_vec(),
            0,
            ValueType::Value,
        ));
        memtable.insert(InternalValue::from_components(
            b"abc".to_vec(),
            b"abc".to_vec(),
            99,
            ValueType::Value,
        ));
        memtable.insert(InternalValue::from_components(
            b"abc".to_vec(),
            b"abc".to_vec(),
            255,
            ValueType::Value,
        ));

        assert_eq!(
            Some(InternalValue::from_components(
                b"abc".to_vec(),
                b"abc".to_vec(),
                255,
                ValueType::Value,
            )),
            memtable.get(b"abc", SeqNo::MAX)
        );

        assert_eq!(
            Some(InternalValue::from_components(
                b"abc".to_vec(),
                b"abc".to_vec(),
                99,
                ValueType::Value,
            )),
            memtable.get(b"abc", 100)
        );

        assert_eq!(
            Some(InternalValue::from_components(
                b"abc".to_vec(),
                b"abc".to_vec(),
                0,
                ValueType::Value,
            )),
            memtable.get(b"abc", 50)
        );
    }
}
