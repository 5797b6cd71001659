//! Concatenation: the UDH on our long submits, and reassembly of long mobile-originated messages.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

/// Our UDH: one concatenation element with an 8-bit reference (`05 00 03 ref total seq`).
pub(super) fn header(reference: u8, total: u8, seq: u8) -> [u8; 6] {
    [5, 0, 3, reference, total, seq]
}

/// Where one part sits in a concatenated message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Concat {
    /// Shared by the parts of one message.
    pub reference: u16,
    /// Parts in the message.
    pub total: u8,
    /// This part's place, from 1.
    pub seq: u8,
}

/// Split a payload that starts with a UDH into its concatenation element (if any) and the text
/// bytes after the header; `None` when the header's lengths do not fit the payload.
pub(super) fn split(short_message: &[u8]) -> Option<(Option<Concat>, &[u8])> {
    let len = *short_message.first()? as usize;
    let udh = short_message.get(1..=len)?;
    let payload = &short_message[len + 1..];
    let mut elements = udh;
    while let [iei, elen, rest @ ..] = elements {
        let elen = *elen as usize;
        let data = rest.get(..elen)?;
        let concat = match (*iei, data) {
            (0x00, &[reference, total, seq]) => Some((reference as u16, total, seq)),
            (0x08, &[hi, lo, total, seq]) => Some((u16::from_be_bytes([hi, lo]), total, seq)),
            _ => None,
        };
        if let Some((reference, total, seq)) = concat {
            let valid = total > 0 && (1..=total).contains(&seq);
            let concat = valid.then_some(Concat {
                reference,
                total,
                seq,
            });
            return Some((concat, payload));
        }
        elements = &rest[elen..];
    }
    Some((None, payload))
}

/// Messages being reassembled at once; past this the oldest is given up.
const MAX_PARTIAL: usize = 1024;

/// How long the parts of an incomplete message are kept.
const PARTIAL_TTL: Duration = Duration::from_secs(600);

/// Identifies one concatenated message: its sender, reference and part count.
pub(super) type Key = (String, u16, u8);

struct Partial {
    data_coding: u8,
    parts: BTreeMap<u8, Vec<u8>>,
    first_seen: Instant,
}

/// Parts of long MO messages waiting for the rest, bounded in count and age.
#[derive(Default)]
pub(super) struct Reassembly {
    partial: HashMap<Key, Partial>,
}

impl Reassembly {
    /// Add a part; when every part is in, the message's bytes in order and their `data_coding`
    /// (the entry stays until [`Reassembly::finish`], so a failed store can be retried).
    pub fn offer(
        &mut self,
        key: Key,
        seq: u8,
        data_coding: u8,
        payload: &[u8],
    ) -> Option<(u8, Vec<u8>)> {
        self.evict(Instant::now());
        let total = key.2 as usize;
        let partial = self.partial.entry(key).or_insert_with(|| Partial {
            data_coding,
            parts: BTreeMap::new(),
            first_seen: Instant::now(),
        });
        // A redelivered part replaces its copy rather than adding one.
        partial.parts.insert(seq, payload.to_vec());
        (partial.parts.len() == total).then(|| {
            (
                partial.data_coding,
                partial.parts.values().flatten().copied().collect(),
            )
        })
    }

    /// Forget a message once it is stored.
    pub fn finish(&mut self, key: &Key) {
        self.partial.remove(key);
    }

    /// Messages still incomplete.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.partial.len()
    }

    fn evict(&mut self, now: Instant) {
        self.partial
            .retain(|_, p| now.duration_since(p.first_seen) < PARTIAL_TTL);
        while self.partial.len() >= MAX_PARTIAL {
            let oldest = self
                .partial
                .iter()
                .min_by_key(|(_, p)| p.first_seen)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(key) => {
                    tracing::warn!(reference = key.1, "incomplete MO message given up");
                    self.partial.remove(&key);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_header_is_the_eight_bit_concatenation_element() {
        let h = header(0x42, 3, 1);
        assert_eq!(h, [0x05, 0x00, 0x03, 0x42, 0x03, 0x01]);
        let payload = [&h[..], b"abc"].concat();
        let (concat, text) = split(&payload).unwrap();
        assert_eq!(
            concat,
            Some(Concat {
                reference: 0x42,
                total: 3,
                seq: 1
            })
        );
        assert_eq!(text, b"abc");
    }

    #[test]
    fn sixteen_bit_references_and_other_elements_are_read() {
        // A port-addressing element (05) before a 16-bit concatenation element.
        let payload = [10, 0x05, 0x04, 0, 0, 0, 0, 0x08, 0x04, 0x12, 0x34, b'x'];
        assert_eq!(split(&payload), None, "element overruns the header");
        let payload = [
            12, 0x05, 0x04, 0, 0, 0, 0, 0x08, 0x04, 0x12, 0x34, 2, 2, b'x',
        ];
        let (concat, text) = split(&payload).unwrap();
        assert_eq!(concat.unwrap().reference, 0x1234);
        assert_eq!(text, b"x");
        assert_eq!(split(&[7, 0, 3]), None, "header longer than the payload");
        assert_eq!(
            split(&[5, 0, 3, 1, 2, 3]).unwrap().0,
            None,
            "seq beyond total"
        );
    }

    #[test]
    fn parts_are_joined_in_order_once_all_are_in_and_kept_until_finished() {
        let mut r = Reassembly::default();
        let key: Key = ("+819012345678".into(), 7, 3);
        assert_eq!(r.offer(key.clone(), 3, 8, b"ef"), None);
        assert_eq!(r.offer(key.clone(), 1, 8, b"ab"), None);
        assert_eq!(r.offer(key.clone(), 1, 8, b"ab"), None, "a redelivery");
        let (coding, bytes) = r.offer(key.clone(), 2, 8, b"cd").unwrap();
        assert_eq!((coding, bytes.as_slice()), (8, &b"abcdef"[..]));
        assert_eq!(r.waiting(), 1);
        r.finish(&key);
        assert_eq!(r.waiting(), 0);
    }

    #[test]
    fn incomplete_messages_are_bounded() {
        let mut r = Reassembly::default();
        for reference in 0..(MAX_PARTIAL as u16 + 10) {
            r.offer(("+81".into(), reference, 2), 1, 0, b"x");
        }
        assert!(r.waiting() <= MAX_PARTIAL);
    }
}
