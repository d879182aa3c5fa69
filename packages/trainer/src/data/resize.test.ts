import { resizeBicubicLikePil } from './resize';

// Pillow 9.4 (Debian python3-pil) on a 13 x 9 RGB image, pixel (x, y, c) = (37x + 11y + 90c + 29 ((x y) mod 7)) mod 256:
//   Image.frombytes('RGB', (13, 9), pixels).resize(size, Image.BICUBIC).tobytes(), base64.
const PIL_RESIZED: Record<string, string> = {
  '6x5': 'KIOZe6N3iX5dQ3yScqhHeodjVKF3hV+kd4SZUbVzh3aUe2G8gXamknWYlq5Wa4uNl3eVqJuEWIC2cmahQpWfS5C7dWinVouhdcQtinWCdIePcrBIkYx5doqA',
  '20x17':
    'AFavDGbKJoDyPZX/Urasa9oVkf8rrqVSwgN37BKOpTihBVu1DHLuLoe5RJ4FWcIBdeglm/86uXVixwB9AVm3EmysM46qTrPMcbGTi6M1ddFafp5hpDhQ0lNulmSWCF+5FXe8PJmDWLsVfa0di65Gc9hojoJgqjJSBV7IIHlzTKkdc+pIraVkxjl2QG22JY9/aJ0Kn9EyebmADWfBKIJaWLwZf+80wYRYtD+JKX6/PZlebqEDCWPRLItnZrkApbkxtYN4m0C0XTu9OGeON7BFffI0bdRuEm3HOJhDeL8FsbdWtXKVkz27U0O7PIN5ObhCD2nUOJ97f8Ii0lBkmFW0OofjpjSRjDiWH4nKbNRdbMZfGHLMR7NelrAt20J7eWzLTH3avCiEcFelGJDTFG3ZSrSHjOI8jVWWfD6/bGe/j1atkVDCeWTagr1ZX8FYHnfRX89uksxMjkCrd07EdGi/mVWtjV3Id2fiGHLdXbuSlfZUKo67YUCxyCiCXIbffYXu8lCtpKw/T7xVI33Wedh+helnIHnOiDahvTqTTZrzonvZ+kyuHX/iaYajrZhiU7uDU5CahU+ukG/htYjL2Jp6kb0nS7RTKYTciYqVoaRoSMCQY36hjFS8l3vqwZOy3J54Io3nck21ySxvps1DW9SEMoDjz1LF6IeJke5Fb9IQSq1QLovhlTSsyk1lnOpHSMGmT3bn8FO7z6p1j/pDJpPshVnC8imG2nthpnV9f06muIFxsLk+deAZYMQARag/M5Dnr0K99jp+04timmmQiliixZJloMg0degZLJfxhXTO7USf3DSUzx2JvSZ0hqtBaNolYLodVK4IQaNNOZbtrmbL8kGd2DOU0BqJtkBtfck6Z9MlY70gO5z/T37qZlbEYkvEYku+XmC0QJ6gOrKXSKKYRp+RQZ+3QJv/WnTkaVXFZE3GZlHAW2+yPa2fQrCaTaWcR6DmLYzSEHe9GoLGI4HOLHvWNnvgNYDpLojwNZH5P5r3RqDnJofME3vAH4fLKIPTMX3bO3/lNobuMYz0SaJPR6VSS7JbXN5tdpl+lDCStDyydVDKBmPZEoH4MJnHS6VUS6pPUL9iY+B0gXyEny+bt0a8VVrTBGfeTKYAYb0Gg9sooetDrI5hsRp53TZ7mFqMGHSqMHbaSoeWUasAbswIjeQxqedMrmxrvRp+40V/c2aaFXmwUasAbdManOVHz39vmVagRmGzcohNg7k4fdVurnCln198WbEHeOkirNVT1G96gFmvTGqmgZU8hsJNgdp0VK4Ic90nqOla5UaGjjjBDYbSObM2d+sOsv9Q722Ly0pvXbQRffcyu8xn6DCUZ0/UEJS8TcAbj/ImuP9W',
  '13x4':
    'B2G7QKJbgqqZkHtuYpKGcGdWsqZmCmS+Q6Veha02k35xZZWJc2pZH3nUn7ZDeX+MfFW3lmLBm42VdNcfInzXorlGfIKXf1i6mWXEnpCYOZPmn0qjhoGOdk+phZmMXrRoRahYPJbpok2miYSReVKsiJyPYbdrUassbNFSmpGAZE6oi3pxSKKgdmrPVK4vb9RVnZSDZ1Grjn10S6Wj',
  '5x9':
    'IH/Thbhfj0GXN59pnKFEUJ1Se3h3TbJbdp9UYXp5aYl7hFauUaOHhH+DdVq7VaeYi2G5gqCEYJebomXGfXaTl5iZdadkhIWRpp+Xr1K4qHFNVLBOy0Gmip46JoDaJ4HbO5XvI33XMIrkcsYhq1KGNIWQkrg4lESdkKlRa5R8pahOko93bbpi',
};

describe('resizeBicubicLikePil', () => {
  const [width, height] = [13, 9];
  const pixels = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++)
      for (let c = 0; c < 3; c++) pixels[(y * width + x) * 3 + c] = (x * 37 + y * 11 + c * 90 + ((x * y) % 7) * 29) % 256;
  }

  it.each(Object.keys(PIL_RESIZED))("equals Pillow's bicubic resize to %s bit for bit (shrinking, enlarging, one side only)", (size) => {
    const [outWidth, outHeight] = size.split('x').map(Number);
    const expected = Buffer.from(PIL_RESIZED[size], 'base64');
    expect(Array.from(resizeBicubicLikePil(pixels, width, height, 3, outWidth, outHeight))).toEqual(Array.from(expected));
  });

  it('returns a copy at the same size, and names bad arguments', () => {
    const same = resizeBicubicLikePil(pixels, width, height, 3, width, height);
    expect(same).not.toBe(pixels);
    expect(Array.from(same)).toEqual(Array.from(pixels));
    expect(() => resizeBicubicLikePil(pixels, width, height, 3, 0, 4)).toThrow('resizeBicubicLikePil: outWidth is 0, expected a whole number >= 1');
    expect(() => resizeBicubicLikePil(pixels, 12, height, 3, 6, 4)).toThrow('resizeBicubicLikePil: 351 values, expected 12 x 9 x 3 = 324');
  });
});
