/**
 * The Mann-Whitney U test against reference values from SciPy 1.17
 * (scipy.stats.mannwhitneyu(x, y, alternative=…, method='asymptotic', use_continuity=True)).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { erfc, mannWhitneyU, median } from './mann-whitney.ts';

/** Relative closeness: the erfc approximation is good to ~1e-7 relative. */
function close(actual: number, expected: number, rel = 1e-6): void {
  assert.ok(Math.abs(actual - expected) <= rel * Math.abs(expected) + 1e-12, `${actual} ≉ ${expected}`);
}

const cases: { name: string; x: number[]; y: number[]; u: number; p: Record<'two-sided' | 'greater' | 'less', number> }[] = [
  { name: 'fully separated', x: [1, 2, 3], y: [4, 5, 6], u: 0, p: { 'two-sided': 0.08085559837005224, greater: 0.9854518341293739, less: 0.04042779918502612 } },
  { name: 'with ties', x: [1, 2, 2, 3, 3, 3, 4], y: [2, 3, 3, 4, 4, 5, 5, 6], u: 11, p: { 'two-sided': 0.04988443697992588, greater: 0.98122802559914, less: 0.02494221848996294 } },
  { name: 'interleaved', x: [1.1, 2.5, 3.3, 4.8, 5.2, 6.9, 7.4], y: [1.3, 2.2, 3.9, 4.1, 5.5, 6.1, 7.7, 8.2], u: 24, p: { 'two-sided': 0.6854434826775221, greater: 0.6987378238193516, less: 0.34272174133876104 } },
  {
    name: 'forty against fifty, many ties',
    x: Array.from({ length: 40 }, (_, i) => ((i * 7) % 13) + 0.5), y: Array.from({ length: 50 }, (_, i) => (i * 5) % 11), u: 1202,
    p: { 'two-sided': 0.10148149680068468, greater: 0.05074074840034234, less: 0.9501017503080683 },
  },
];

for (const c of cases) {
  test(`U and p match SciPy: ${c.name}`, () => {
    for (const alt of ['two-sided', 'greater', 'less'] as const) {
      const r = mannWhitneyU(c.x, c.y, alt);
      assert.equal(r.u, c.u);
      close(r.p, c.p[alt]);
      assert.equal(r.effect, c.u / (c.x.length * c.y.length));
    }
  });
}

test('a small shift in large samples is significant (p ≈ 1.9e-6, as SciPy)', () => {
  const x = Array.from({ length: 300 }, (_, i) => Math.round((10 + (i % 17) * 0.3) * 10) / 10);
  const y = Array.from({ length: 250 }, (_, i) => Math.round((10 + (i % 13) * 0.3) * 10) / 10);
  const r = mannWhitneyU(x, y, 'greater');
  assert.equal(r.u, 46058);
  close(r.p, 1.910706312056572e-6, 1e-5);
  close(mannWhitneyU(x, y).p, 3.821412624113144e-6, 1e-5);
});

test('identical samples: no evidence either way (p = 1, effect ½); empty input gives NaN', () => {
  const r = mannWhitneyU([5, 5, 5], [5, 5, 5], 'greater');
  assert.equal(r.p, 1);
  assert.equal(r.effect, 0.5);
  assert.ok(Number.isNaN(mannWhitneyU([], [1, 2]).p));
});

test('erfc and median', () => {
  close(erfc(0), 1, 1e-7);
  close(erfc(1), 0.15729920705028513, 2e-7);
  close(erfc(-1), 1.8427007929497148, 2e-7);
  close(erfc(3), 2.209049699858544e-5, 2e-7);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
});
