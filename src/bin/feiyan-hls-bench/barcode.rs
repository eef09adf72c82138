//! The clock in the picture: 48 bits of Unix milliseconds drawn as black and white cells,
//! then the same bits inverted (a frame reads back only when both agree). The cells are
//! 24 px squares, large enough to survive H.264 at any sane bitrate. `latency.rs`'s page
//! script reads the same layout.

pub const WIDTH: usize = 640;
pub const HEIGHT: usize = 360;
const BITS: usize = 48;
const PER_ROW: usize = 24;
const CELL: usize = 24;
const X0: usize = 32;
const Y0: usize = 24;

fn cell_origin(row: usize, col: usize) -> (usize, usize) {
    (X0 + col * CELL, Y0 + row * CELL)
}

/// Draws `value` (its low 48 bits) into the 8-bit luma picture `frame` (WIDTH x HEIGHT).
pub fn draw(frame: &mut [u8], value: u64) {
    for k in 0..BITS {
        let bit = (value >> k) & 1 == 1;
        for (row, on) in [(k / PER_ROW, bit), (k / PER_ROW + 2, !bit)] {
            let (x, y) = cell_origin(row, k % PER_ROW);
            let luma = if on { 235 } else { 16 };
            for line in frame[y * WIDTH..].chunks_mut(WIDTH).take(CELL) {
                line[x..x + CELL].fill(luma);
            }
        }
    }
}

/// Reads the value back from a luma picture, `None` when the two copies disagree.
pub fn read(frame: &[u8]) -> Option<u64> {
    if frame.len() < WIDTH * HEIGHT {
        return None;
    }
    let sample = |row: usize, col: usize| {
        let (x, y) = cell_origin(row, col);
        let mut sum = 0u32;
        for dy in 8..16 {
            for dx in 8..16 {
                sum += u32::from(frame[(y + dy) * WIDTH + x + dx]);
            }
        }
        sum / 64 > 128
    };
    let mut value = 0u64;
    for k in 0..BITS {
        let bit = sample(k / PER_ROW, k % PER_ROW);
        if bit == sample(k / PER_ROW + 2, k % PER_ROW) {
            return None;
        }
        value |= u64::from(bit) << k;
    }
    Some(value)
}

/// The same reader for the page (RGBA from a canvas, red channel), as JavaScript.
pub const READ_JS: &str = r#"function readClock(d, w) {
  const sample = (row, col) => {
    const x = 32 + col * 24, y = 24 + row * 24; let sum = 0;
    for (let dy = 8; dy < 16; dy++) for (let dx = 8; dx < 16; dx++) sum += d[((y + dy) * w + x + dx) * 4];
    return sum / 64 > 128;
  };
  let value = 0;
  for (let k = 0; k < 48; k++) {
    const bit = sample(Math.floor(k / 24), k % 24);
    if (bit === sample(Math.floor(k / 24) + 2, k % 24)) return null;
    if (bit) value += 2 ** k;
  }
  return value;
}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut frame = vec![128u8; WIDTH * HEIGHT];
        let ms = 1_796_563_200_123u64;
        draw(&mut frame, ms);
        assert_eq!(read(&frame), Some(ms));
        frame[(Y0 + 2 * CELL + 12) * WIDTH + X0 + 12] = 0;
        assert_eq!(read(&frame), Some(ms), "one pixel does not flip a cell");
        let plain = vec![128u8; WIDTH * HEIGHT];
        assert_eq!(read(&plain), None);
    }
}
