/**
 * The selector matcher and the label syntax (src/labels.ts), without a network: every
 * operator, absent keys, the string form and its errors, the caps.
 */
import { expect } from 'chai'
import {
  checkConstraints, checkLabels, CONSTRAINT_OPS, firstUnmet, formatSelector, labelsFor, agreeOn, matches, matchesOne, MAX_CONSTRAINTS, MAX_LABELS,
  parseLabels, parseSelector, SelectorError, toConstraints, type Constraint
} from '../src/labels.js'
import { InvalidInputError } from '../src/errors.js'

const L = { region: 'eu', gpu: 'a100', cores: '16', spot: '', 'example.com/licence': 'matlab' }

function errorOf (fn: () => unknown): Error {
  try { fn() } catch (err) { return err as Error }
  throw new Error('expected an error')
}

describe('labels: the selector matcher', () => {
  const cases: Array<[Constraint, boolean, boolean]> = [
    // constraint, holds for L, holds for {} (no labels)
    [{ key: 'region', op: '=', values: ['eu'] }, true, false],
    [{ key: 'region', op: '=', values: ['us'] }, false, false],
    [{ key: 'region', op: '!=', values: ['us'] }, true, true],
    [{ key: 'region', op: '!=', values: ['eu'] }, false, true],
    [{ key: 'gpu', op: 'in', values: ['a100', 'h100'] }, true, false],
    [{ key: 'gpu', op: 'in', values: ['h100'] }, false, false],
    [{ key: 'gpu', op: 'notin', values: ['h100', 'v100'] }, true, true],
    [{ key: 'gpu', op: 'notin', values: ['a100'] }, false, true],
    [{ key: 'spot', op: 'exists' }, true, false],
    [{ key: 'spot', op: '!exists' }, false, true],
    [{ key: 'cores', op: 'gt', values: ['8'] }, true, false],
    [{ key: 'cores', op: 'gt', values: ['16'] }, false, false],
    [{ key: 'cores', op: 'lt', values: ['32'] }, true, false],
    [{ key: 'cores', op: 'lt', values: ['-3'] }, false, false],
    [{ key: 'region', op: 'gt', values: ['1'] }, false, false], // not an integer: never matches
    [{ key: 'example.com/licence', op: '=', values: ['matlab'] }, true, false]
  ]
  for (const [c, withL, withNone] of cases) {
    it(`${formatSelector([c])}: ${withL} with labels, ${withNone} without`, () => {
      expect(matchesOne(L, c)).to.equal(withL)
      expect(matchesOne({}, c)).to.equal(withNone)
    })
  }

  it('covers every operator', () => {
    expect(new Set(cases.map(c => c[0].op))).to.deep.equal(new Set(CONSTRAINT_OPS))
  })

  it('ANDs the constraints and names the first unmet one', () => {
    const cs = parseSelector('region=eu,gpu in (h100),cores gt 8')
    expect(matches(L, cs)).to.equal(false)
    expect(firstUnmet(L, cs)).to.deep.equal({ key: 'gpu', op: 'in', values: ['h100'] })
    expect(matches(L, [])).to.equal(true)
    expect(matches(undefined, undefined)).to.equal(true)
  })

  it('a key named like an Object prototype member is not present unless labelled', () => {
    expect(matchesOne({}, { key: 'constructor', op: 'exists' })).to.equal(false)
    expect(matchesOne({}, { key: 'toString', op: '!exists' })).to.equal(true)
  })

  it('labelsFor keeps the labels the constraints look at; agreeOn compares those only', () => {
    const cs = parseSelector('region=eu,!spot,zone')
    expect(labelsFor(L, cs)).to.deep.equal({ region: 'eu', spot: '' })
    expect(agreeOn(L, { region: 'eu', spot: '', gpu: 'other' }, cs)).to.equal(true)
    expect(agreeOn(L, { region: 'us', spot: '' }, cs)).to.equal(false)
    expect(agreeOn(L, { region: 'eu' }, cs)).to.equal(false) // spot present in one only
  })
})

describe('labels: the string form', () => {
  it('parses every operator', () => {
    expect(parseSelector('region=eu, zone==a ,tier!=free,gpu in (a100, h100),arch notin (arm),spot,!preemptible,cores gt 8,mem lt 64,x>1,y<2')).to.deep.equal([
      { key: 'region', op: '=', values: ['eu'] },
      { key: 'zone', op: '=', values: ['a'] },
      { key: 'tier', op: '!=', values: ['free'] },
      { key: 'gpu', op: 'in', values: ['a100', 'h100'] },
      { key: 'arch', op: 'notin', values: ['arm'] },
      { key: 'spot', op: 'exists' },
      { key: 'preemptible', op: '!exists' },
      { key: 'cores', op: 'gt', values: ['8'] },
      { key: 'mem', op: 'lt', values: ['64'] },
      { key: 'x', op: 'gt', values: ['1'] },
      { key: 'y', op: 'lt', values: ['2'] }
    ])
  })

  it('round-trips through formatSelector', () => {
    const text = 'region=eu,tier!=free,gpu in (a100,h100),arch notin (arm),spot,!preemptible,cores gt 8,mem lt 64'
    expect(formatSelector(parseSelector(text))).to.equal(text)
  })

  const bad: Array<[string, RegExp]> = [
    ['gpu like a100', /unknown operator "like"/],
    ['gpu in a100', /malformed/],
    ['region=eu,,zone=a', /empty term/],
    ['region=eu,', /empty term/],
    ['gpu in (a100', /unclosed/],
    ['gpu in (a100))', /unbalanced/],
    ['gpu in ((a))', /nested/],
    ['cores gt many', /compares integers/],
    ['gpu in ()', /label value|one or more/],
    ['-bad=x', /label key/],
    ['region=e u', /malformed|unknown operator/],
    ['region=' + 'x'.repeat(64), /label value/],
    ['a=b=c', /malformed/]
  ]
  for (const [text, message] of bad) {
    it(`refuses ${JSON.stringify(text)} with a SelectorError naming it`, () => {
      const err = errorOf(() => parseSelector(text))
      expect(err).to.be.instanceOf(SelectorError)
      expect(err).to.be.instanceOf(InvalidInputError)
      expect((err as SelectorError).code).to.equal('invalid-selector')
      expect((err as SelectorError).status).to.equal(400)
      expect(err.message).to.match(message)
    })
  }

  it('caps the length of the string and the number of terms', () => {
    expect(errorOf(() => parseSelector('a,'.repeat(3000) + 'a')).message).to.match(/at most 4096/)
    const many = Array.from({ length: MAX_CONSTRAINTS + 1 }, (_, i) => `k${i}`).join(',')
    expect(errorOf(() => parseSelector(many))).to.be.instanceOf(SelectorError)
  })
})

describe('labels: the structured form and label sets', () => {
  it('toConstraints takes either form and normalises exists', () => {
    expect(toConstraints('spot')).to.deep.equal([{ key: 'spot', op: 'exists' }])
    expect(toConstraints([{ key: 'spot', op: 'exists', values: [] }])).to.deep.equal([{ key: 'spot', op: 'exists' }])
  })

  it('names an unknown operator, a wrong arity, an unknown field', () => {
    expect(errorOf(() => checkConstraints([{ key: 'a', op: '~=', values: ['x'] }])).message).to.match(/constraints\.0\.op: unknown operator "~="/)
    expect(errorOf(() => checkConstraints([{ key: 'a', op: '=', values: ['x', 'y'] }])).message).to.match(/exactly one value/)
    expect(errorOf(() => checkConstraints([{ key: 'a', op: 'exists', values: ['x'] }])).message).to.match(/takes no values/)
    expect(errorOf(() => checkConstraints([{ key: 'a', op: 'in' }])).message).to.match(/one or more/)
    expect(errorOf(() => checkConstraints([{ key: 'a', op: 'exists', extra: 1 }])).message).to.match(/constraints\.0/)
    expect(errorOf(() => checkConstraints('region=eu'))).to.be.instanceOf(SelectorError)
    expect(errorOf(() => checkConstraints([{ key: 'a', op: 'in', values: Array.from({ length: 17 }, (_, i) => `v${i}`) }]))).to.be.instanceOf(SelectorError)
  })

  it('checks label sets: syntax, count and bytes', () => {
    expect(parseLabels(['region=eu', 'licence=matlab', 'spot='])).to.deep.equal({ region: 'eu', licence: 'matlab', spot: '' })
    expect(errorOf(() => parseLabels(['region'])).message).to.match(/expected key=value/)
    expect(errorOf(() => parseLabels(['region=eu', 'region=us'])).message).to.match(/given twice/)
    expect(errorOf(() => parseLabels(['Bad Key=x'])).message).to.match(/label key/)
    expect(errorOf(() => parseLabels(['EXAMPLE.com/x=y'])).message).to.match(/prefix/)
    expect(errorOf(() => checkLabels({ a: 'x'.repeat(64) })).message).to.match(/labels\.a: /)
    const many = Object.fromEntries(Array.from({ length: MAX_LABELS + 1 }, (_, i) => [`k${i}`, 'v']))
    expect(errorOf(() => checkLabels(many)).message).to.match(/at most 16 labels/)
    const big = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`key${i}${'k'.repeat(55)}`, 'v'.repeat(63)]))
    expect(errorOf(() => checkLabels(big)).message).to.match(/bytes of keys and values/)
    expect((errorOf(() => checkLabels({ a: 1 })) as InvalidInputError).code).to.equal('invalid-labels')
  })
})
