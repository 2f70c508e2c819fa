//! Numbers as whisper.cpp stores them: f16 and bf16 conversions, and q8_0
//! blocks.
//!
//! Why it exists: the converter reads f16/bf16 tensors and writes f16 or
//! q8_0 ones, bit-exactly as ggml does (its rounding, its quantiser), so
//! the files we write are the files ggml's own tools would.

use super::{Q8_0_BLOCK, Q8_0_BLOCK_BYTES};

// ---------------------------------------------------------------------------
// Half-precision floats
// ---------------------------------------------------------------------------

/// IEEE 754 binary16 → binary32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: shift the mantissa up until its leading bit is the
            // implicit one, lowering the exponent as we go.
            let mut e: u32 = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// IEEE 754 binary32 → binary16, rounding to nearest, ties to even;
/// overflow becomes infinity, NaN stays NaN.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        let nan = if man != 0 {
            0x200 | (man >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // A binary16 subnormal (or zero): value = r * 2^-24.
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let kept = m >> shift;
        let rest = m & ((1u32 << shift) - 1);
        let rounded = if rest > half || (rest == half && kept & 1 == 1) {
            kept + 1
        } else {
            kept
        };
        return sign | rounded as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        // May carry into the exponent, and up to infinity: both correct.
        h += 1;
    }
    sign | h as u16
}

/// bfloat16 → binary32 (exact).
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

// ---------------------------------------------------------------------------
// q8_0 blocks
// ---------------------------------------------------------------------------

/// ggml's `quantize_row_q8_0_ref`: appends the q8_0 blocks of `x` to `out`,
/// one per [`Q8_0_BLOCK`] values (`x.len()` must be a multiple of it; a
/// partial block at the end is left out). Each block is its scale
/// `d = max|x| / 127` as f16, then `round(x · (1/d))` as `i8` (0 when `d` is
/// 0). The same f32 operations in the same order as ggml's, and Rust's
/// `round` is C's `roundf` (halves away from zero), so the bytes are
/// ggml's.
pub fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    debug_assert!(x.len().is_multiple_of(Q8_0_BLOCK), "{} values", x.len());
    out.reserve(x.len() / Q8_0_BLOCK * Q8_0_BLOCK_BYTES);
    for block in x.chunks_exact(Q8_0_BLOCK) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        // |x · id| ≤ 127 up to rounding, so the cast never saturates.
        out.extend(block.iter().map(|&v| (v * id).round() as i8 as u8));
    }
}
