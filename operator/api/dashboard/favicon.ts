/**
 * The dashboard's icon, `/favicon.ico`: a 16×16 "D" drawn below as text and
 * encoded as a Windows icon (one 32-bit BMP image) when the module loads, so
 * the operator carries no binary file. Browsers ask for it before any login,
 * so it is served without one.
 *
 * @module
 */

/** The picture: `#` the letter, `.` the background, ` ` transparent (the rounded corners). */
const PICTURE = [
  " .............. ",
  "................",
  "................",
  "...#######......",
  "...########.....",
  "...##....###....",
  "...##.....##....",
  "...##.....###...",
  "...##.....###...",
  "...##.....##....",
  "...##....###....",
  "...########.....",
  "...#######......",
  "................",
  "................",
  " .............. ",
];

/** Colours as [blue, green, red, alpha], the BMP's byte order. */
const COLOURS: Record<string, [number, number, number, number]> = {
  "#": [255, 255, 255, 255],
  ".": [0x2b, 0x21, 0x17, 255], // the page header's #17212b
  " ": [0, 0, 0, 0],
};

/** Encodes `picture` (16 rows of 16 characters) as an `.ico` file. Pure. */
export function encodeIcon(picture: readonly string[]): Uint8Array<ArrayBuffer> {
  const size = 16;
  const pixels = size * size * 4;
  const mask = size * 4; // 1 bit per pixel, rows padded to 4 bytes; alpha does the work
  const image = 40 + pixels + mask;
  const out = new Uint8Array(6 + 16 + image);
  const view = new DataView(out.buffer);
  view.setUint16(2, 1, true); // type: icon
  view.setUint16(4, 1, true); // one image
  out[6] = size;
  out[7] = size;
  view.setUint16(10, 1, true); // planes
  view.setUint16(12, 32, true); // bits per pixel
  view.setUint32(14, image, true);
  view.setUint32(18, 22, true); // offset of the image
  const bmp = 22;
  view.setUint32(bmp, 40, true); // BITMAPINFOHEADER
  view.setInt32(bmp + 4, size, true);
  view.setInt32(bmp + 8, size * 2, true); // colour and mask, stacked
  view.setUint16(bmp + 12, 1, true);
  view.setUint16(bmp + 14, 32, true);
  view.setUint32(bmp + 20, pixels + mask, true);
  for (let row = 0; row < size; row++) {
    // BMP rows go bottom-up.
    const line = picture[size - 1 - row] ?? "";
    for (let col = 0; col < size; col++) {
      const colour = COLOURS[line[col] ?? " "] ?? COLOURS[" "]!;
      out.set(colour, bmp + 40 + (row * size + col) * 4);
    }
  }
  return out;
}

/** The bytes of `/favicon.ico`. */
export const FAVICON_ICO: Uint8Array<ArrayBuffer> = encodeIcon(PICTURE);
