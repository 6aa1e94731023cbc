//! What the workload controllers share about the pods they make.

/// FNV-1a of the template, printed like Kubernetes' pod-template-hash.
pub fn template_hash(template: &serde_json::Value) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    // Kubernetes renders the hash with a "safe" alphabet (no vowels).
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = h as u64;
    let mut s = String::new();
    while n > 0 || s.is_empty() {
        s.push(ALPHA[(n % ALPHA.len() as u64) as usize] as char);
        n /= ALPHA.len() as u64;
    }
    s
}
