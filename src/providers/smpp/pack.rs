//! GSM-7 septets packed eight into seven octets (3GPP TS 23.038 §6.1.2.1), for SMSCs that take
//! `short_message` as the air interface carries it rather than one septet a byte.

/// Carriage return: the padding §6.1.2.3.1 puts in seven spare bits, so that the handset does not
/// read them as a stray '@' (septet 0).
const CR: u8 = 0x0D;

/// Fill bits between a UDH of `udh_len` octets (its length octet included) and the first
/// septet, which must start on a septet boundary counted from the start of the user data
/// (TS 23.040 §9.2.3.24): a 6-octet header is 48 bits, so 1 fill bit.
pub(super) fn fill_bits(udh_len: usize) -> u8 {
    ((7 - (udh_len * 8) % 7) % 7) as u8
}

/// `septets` packed least significant bit first after `fill` zero bits; seven spare bits at
/// the end carry a CR.
pub(super) fn pack(septets: &[u8], fill: u8) -> Vec<u8> {
    let bits = usize::from(fill) + septets.len() * 7;
    let padded = bits % 8 == 1;
    let mut out = Vec::with_capacity(bits.div_ceil(8));
    let mut acc: u32 = 0;
    let mut held = u32::from(fill);
    for &septet in septets.iter().chain(padded.then_some(&CR)) {
        acc |= u32::from(septet & 0x7F) << held;
        held += 7;
        while held >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            held -= 8;
        }
    }
    if held > 0 {
        out.push(acc as u8);
    }
    out
}

/// The septets `pack` packed after `fill` bits, the CR in seven spare bits dropped.
#[cfg(test)]
pub(super) fn unpack(packed: &[u8], fill: u8) -> Vec<u8> {
    let bits = packed.len() * 8 - usize::from(fill);
    let mut septets: Vec<u8> = (0..bits / 7)
        .map(|i| {
            let at = usize::from(fill) + i * 7;
            let pair =
                u16::from(packed[at / 8]) | u16::from(*packed.get(at / 8 + 1).unwrap_or(&0)) << 8;
            ((pair >> (at % 8)) & 0x7F) as u8
        })
        .collect();
    // Seven padding bits read as one septet exactly filling the last octet. A wanted CR ending
    // there reads the same; §6.1.2.3.1 would add a second CR, which a full part has no room for,
    // and a trailing CR shows nothing on a handset anyway.
    if bits.is_multiple_of(7) && septets.last() == Some(&CR) {
        septets.pop();
    }
    septets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::segment;

    #[test]
    fn a_six_octet_udh_takes_one_fill_bit_and_none_without_a_header() {
        assert_eq!(fill_bits(0), 0);
        assert_eq!(fill_bits(6), 1);
        assert_eq!(fill_bits(7), 0);
        assert_eq!(fill_bits(5), 2);
    }

    #[test]
    fn the_standards_example_packs_as_written() {
        // TS 23.038 §6.1.2.1.1's picture, and the classic "hellohello" example.
        assert_eq!(
            pack(b"hellohello", 0),
            [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
        );
        assert_eq!(pack(&[0x41], 0), [0x41]);
        assert_eq!(pack(&[0x41], 1), [0x82]);
        assert_eq!(pack(&[], 0), [] as [u8; 0]);
    }

    #[test]
    fn seven_septets_leave_seven_spare_bits_filled_with_cr() {
        let packed = pack(b"1234567", 0);
        assert_eq!(packed.len(), 7);
        assert_eq!(packed[6] >> 1, CR, "the last octet's top seven bits are CR");
        assert_eq!(unpack(&packed, 0), b"1234567");
        // Eight septets end on an octet boundary: nothing to pad.
        assert_eq!(pack(b"12345678", 0).len(), 7);
        assert_eq!(unpack(&pack(b"12345678", 0), 0), b"12345678");
        // After one fill bit, eight septets leave seven spare bits.
        let packed = pack(b"12345678", 1);
        assert_eq!((packed.len(), packed[7] >> 1), (8, CR));
        assert_eq!(unpack(&packed, 1), b"12345678");
    }

    /// `n` septets of every value but CR, which at the very end would read as padding.
    fn sample(n: usize, step: usize) -> Vec<u8> {
        (0..n)
            .map(|i| match (i * step % 128) as u8 {
                CR => 0,
                septet => septet,
            })
            .collect()
    }

    #[test]
    fn every_part_size_round_trips_and_fits_140_octets() {
        for n in 0..=160 {
            let septets = sample(n, 37);
            let packed = pack(&septets, 0);
            assert!(packed.len() <= 140, "{n} septets alone");
            assert_eq!(unpack(&packed, 0), septets, "{n} septets alone");
        }
        for n in 0..=153 {
            let septets = sample(n, 41);
            let packed = pack(&septets, fill_bits(6));
            assert!(6 + packed.len() <= 140, "{n} septets after a UDH");
            assert_eq!(unpack(&packed, 1), septets, "{n} septets after a UDH");
        }
        assert_eq!(pack(&[0x7F; 160], 0).len(), 140);
        assert_eq!(6 + pack(&[0x7F; 153], 1).len(), 140);
    }

    #[test]
    fn extension_escapes_straddling_octets_round_trip() {
        // Each extension character at every offset within an octet group of eight septets.
        let (_, parts) = segment::encoded_parts("{}[]~|^\\€\u{0C}");
        for shift in 0..8 {
            let mut septets = vec![b'a'; shift];
            septets.extend_from_slice(&parts[0]);
            for fill in [0, 1] {
                let packed = pack(&septets, fill);
                assert_eq!(unpack(&packed, fill), septets, "shift {shift} fill {fill}");
                assert_eq!(
                    fake_smsc::text::gsm7_unpack(&packed, fill),
                    septets,
                    "the fake's own unpack, shift {shift} fill {fill}"
                );
            }
        }
    }
}
