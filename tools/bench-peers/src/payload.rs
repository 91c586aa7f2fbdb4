//! Record payloads: deterministic, incompressible-ish printable bytes, identical for every
//! peer, so that reads can be checked against what was written.

/// How many distinct payloads a pool holds. Prime, so that a read that returns the wrong
/// record is caught unless it is off by a multiple of this.
const POOL_LEN: usize = 1021;

/// A pool of payloads of one size; record `i` carries payload `i % POOL_LEN`.
pub struct Payloads {
    bytes: Vec<u8>,
    size: usize,
}

impl Payloads {
    /// Payloads of `size` bytes each, made of ASCII letters and digits (so that the JSON
    /// peer can store them as a string without escaping).
    pub fn new(size: usize) -> Payloads {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = XorShift::new(0x5eed ^ size as u64);
        let bytes = (0..size * POOL_LEN)
            .map(|_| ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize])
            .collect();
        Payloads { bytes, size }
    }

    /// Payload size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The payload of record `i`.
    pub fn get(&self, i: u64) -> &[u8] {
        let at = (i as usize % POOL_LEN) * self.size;
        &self.bytes[at..at + self.size]
    }

    /// The payloads of records `range`, in order.
    pub fn iter(&self, range: std::ops::Range<u64>) -> impl Iterator<Item = &[u8]> {
        range.map(move |i| self.get(i))
    }

    /// Whether `bytes` is the payload of record `i`.
    pub fn matches(&self, i: u64, bytes: &[u8]) -> bool {
        self.get(i) == bytes
    }
}

/// A small, fast pseudo-random generator (xorshift64*): reproducible workloads without a
/// dependency.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` for picking records.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}
