// A restricted reader and a small writer of Python's pickle format (protocols 2 to 4), enough for what
// `torch.save` writes for state dicts and SparK's checkpoint dicts. The reader is not a Python: it builds
// only plain values (dicts, OrderedDicts, lists, tuples, strings, numbers, booleans, None, bytes) and
// tensors through the one call torch needs (`torch._utils._rebuild_tensor_v2`); any other global (such as
// `os.system`) is refused by name, so a hostile file cannot run or construct anything. Every length field
// is checked against the bytes left before anything is allocated.

import { PthFormatError } from './zip';

/** A tuple as the writer emits it (the reader returns tuples as arrays). */
export class PickleTuple {
  constructor(readonly items: readonly unknown[]) {}
}

/** An `OrderedDict` as the writer emits it (the reader returns dicts and OrderedDicts as `Map`s). */
export class PickleOrderedDict {
  constructor(readonly entries: ReadonlyMap<string | number, unknown>) {}
}

/** Values the reader builds, and the writer writes. `custom` is what the reader's hooks return. */
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | Map<PickleValue, PickleValue>
  | PickleTuple
  | PickleOrderedDict
  | PickleGlobal
  | { readonly pickleCustom: true };

/** A global the reader may resolve: a callable (applied by REDUCE to its argument tuple) or a marker. */
export interface PickleGlobal {
  readonly module: string;
  readonly name: string;
  call?: (args: PickleValue[]) => PickleValue;
}

export interface UnpickleOptions {
  /** The globals allowed, by `module.name`; every other one is refused with its name. */
  globals: ReadonlyMap<string, PickleGlobal>;
  /** Resolves a persistent id (torch: the storage tuple). */
  persistentLoad: (id: PickleValue) => PickleValue;
  /** Error messages start with this. */
  source: string;
}

const MARK = Symbol('mark');
type StackItem = PickleValue | typeof MARK;

function isGlobal(value: unknown): value is PickleGlobal {
  return typeof value === 'object' && value !== null && 'module' in value && 'name' in value && !(value instanceof Map);
}

/**
 * Runs the restricted pickle machine over `bytes` and returns the object it builds.
 *
 * @example
 * const root = unpickle(dataPkl, { globals, persistentLoad, source: 'r50.pth' });
 */
export function unpickle(bytes: Uint8Array, { globals, persistentLoad, source }: UnpickleOptions): PickleValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: StackItem[] = [];
  const memo = new Map<number, StackItem>();
  const latin1 = new TextDecoder('latin1');
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let at = 0;
  let opcodeAt = 0;
  const fail = (what: string): never => {
    throw new PthFormatError(`${source}: pickle byte ${opcodeAt}: ${what}`);
  };
  const need = (count: number, what: string) => {
    if (count < 0 || at + count > bytes.length)
      fail(`${what} needs ${count} bytes but ${bytes.length - at} are left (truncated, or a length that lies)`);
  };
  // Fixed-size arguments: checked, read, and the cursor moved past them.
  const fixed = (size: number, read: (offset: number) => number) => {
    need(size, 'an argument');
    at += size;
    return read(at - size);
  };
  const u8 = () => fixed(1, (offset) => bytes[offset]);
  const u16 = () => fixed(2, (offset) => view.getUint16(offset, true));
  const i32 = () => fixed(4, (offset) => view.getInt32(offset, true));
  const u32 = () => fixed(4, (offset) => view.getUint32(offset, true));
  const take = (count: number, what: string) => {
    need(count, what);
    at += count;
    return bytes.subarray(at - count, at);
  };
  const pop = (): StackItem => {
    if (stack.length === 0) fail('the stack is empty');
    return stack.pop()!;
  };
  const popValue = (): PickleValue => {
    const item = pop();
    if (item === MARK) fail('a mark where a value was expected');
    return item as PickleValue;
  };
  const top = (): StackItem => {
    if (stack.length === 0) fail('the stack is empty');
    return stack[stack.length - 1];
  };
  const popMark = (): PickleValue[] => {
    const markAt = stack.lastIndexOf(MARK);
    if (markAt < 0) fail('no mark on the stack');
    const items = stack.splice(markAt);
    items.shift();
    return items as PickleValue[];
  };
  const asMap = (item: StackItem, op: string): Map<PickleValue, PickleValue> => {
    if (!(item instanceof Map)) fail(`${op} on something that is not a dict`);
    return item as Map<PickleValue, PickleValue>;
  };
  const asList = (item: StackItem, op: string): PickleValue[] => {
    if (!Array.isArray(item)) fail(`${op} on something that is not a list`);
    return item as PickleValue[];
  };
  const longFrom = (data: Uint8Array): number | bigint => {
    if (data.length === 0) return 0;
    let value = 0n;
    for (let i = data.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(data[i]);
    if (data[data.length - 1] & 0x80) value -= 1n << BigInt(8 * data.length);
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  };
  const text = (data: Uint8Array) => {
    try {
      return utf8.decode(data);
    } catch {
      return fail('a string that is not UTF-8');
    }
  };
  const resolveGlobal = (module: string, name: string): PickleGlobal => {
    const found = globals.get(`${module}.${name}`);
    if (!found) {
      fail(`refused global ${module}.${name}: only tensors, dicts, lists, tuples, strings, numbers, booleans and None are read (no code runs)`);
    }
    return found!;
  };

  for (;;) {
    opcodeAt = at;
    if (at >= bytes.length) fail('the pickle ends without STOP (truncated)');
    const op = bytes[at++];
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail('pickle protocol above 5');
        break;
      case 0x95: // FRAME (protocol 4): a length hint only
        take(8, 'FRAME');
        break;
      case 0x2e: {
        // STOP
        const result = popValue();
        return result;
      }
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x74: // TUPLE
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x85: // TUPLE1
        stack.push([popValue()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = popValue();
        stack.push([popValue(), b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = popValue();
        const b = popValue();
        stack.push([popValue(), b, c]);
        break;
      }
      case 0x64: {
        // DICT
        const items = popMark();
        if (items.length % 2) fail('DICT with an odd number of items');
        const dict = new Map<PickleValue, PickleValue>();
        for (let i = 0; i < items.length; i += 2) dict.set(items[i], items[i + 1]);
        stack.push(dict);
        break;
      }
      case 0x61: {
        // APPEND
        const value = popValue();
        asList(top(), 'APPEND').push(value);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const list = asList(top(), 'APPENDS');
        for (const item of items) list.push(item);
        break;
      }
      case 0x73: {
        // SETITEM
        const value = popValue();
        const key = popValue();
        asMap(top(), 'SETITEM').set(key, value);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        if (items.length % 2) fail('SETITEMS with an odd number of items');
        const dict = asMap(top(), 'SETITEMS');
        for (let i = 0; i < items.length; i += 2) dict.set(items[i], items[i + 1]);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const index = op === 0x68 ? u8() : u32();
        if (!memo.has(index)) fail(`memo entry ${index} was never stored`);
        stack.push(memo.get(index)!);
        break;
      }
      case 0x58: // BINUNICODE
        stack.push(text(take(u32(), 'BINUNICODE')));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text(take(u8(), 'SHORT_BINUNICODE')));
        break;
      case 0x8d: {
        // BINUNICODE8
        const low = u32();
        const high = u32();
        stack.push(text(take(high ? -1 : low, 'BINUNICODE8')));
        break;
      }
      case 0x54: // BINSTRING (Python 2 str)
        stack.push(latin1.decode(take(i32(), 'BINSTRING')));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(latin1.decode(take(u8(), 'SHORT_BINSTRING')));
        break;
      case 0x42: // BINBYTES
        stack.push(take(u32(), 'BINBYTES').slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8(), 'SHORT_BINBYTES').slice());
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(longFrom(take(u8(), 'LONG1')));
        break;
      case 0x8b: {
        // LONG4: more than 64 bytes is no integer a checkpoint holds
        const length = i32();
        if (length > 64) fail(`LONG4 of ${length} bytes`);
        stack.push(longFrom(take(length, 'LONG4')));
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        need(8, 'BINFLOAT');
        stack.push(view.getFloat64(at, false));
        at += 8;
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x63: {
        // GLOBAL "module\nname\n"
        const readLine = () => {
          const end = bytes.indexOf(0x0a, at);
          if (end < 0 || end - at > 256) fail('GLOBAL without a short newline-terminated name');
          const line = latin1.decode(bytes.subarray(at, end));
          at = end + 1;
          return line;
        };
        const module = readLine();
        stack.push(resolveGlobal(module, readLine()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = popValue();
        const module = popValue();
        if (typeof name !== 'string' || typeof module !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(resolveGlobal(module as string, name as string));
        break;
      }
      case 0x51: // BINPERSID
        stack.push(persistentLoad(popValue()));
        break;
      case 0x52: {
        // REDUCE
        const args = popValue();
        const callable = pop();
        if (!isGlobal(callable) || !callable.call) fail('REDUCE on something that cannot be called');
        if (!Array.isArray(args)) fail('REDUCE with arguments that are not a tuple');
        const global = callable as PickleGlobal;
        stack.push(global.call!(args as PickleValue[]));
        break;
      }
      case 0x62: {
        // BUILD: only the attribute dict PyTorch sets on a state dict (`_metadata`), which is dropped
        const state = popValue();
        const target = top();
        if (!(target instanceof Map) || !(state instanceof Map || state === null)) fail('BUILD on something other than a dict');
        break;
      }
      default:
        fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')} (not one torch.save writes for tensors and dicts)`);
    }
  }
}

/**
 * Writes `value` as a protocol-2 pickle. Tensors are written by `tensor` (called for the objects it
 * claims), which emits their opcodes through the given writer; `Map` becomes a dict, `PickleOrderedDict`
 * a `collections.OrderedDict`, arrays lists, `PickleTuple` tuples.
 *
 * @example
 * const bytes = pickle(new Map([['epoch', 3]]));
 */
export function pickle(value: unknown, custom?: (value: unknown, out: PickleWriter) => boolean): Uint8Array {
  const out = new PickleWriter(custom);
  out.bytes(0x80, 2);
  out.value(value);
  out.bytes(0x2e);
  return out.finish();
}

/** Emits pickle opcodes into a growing buffer (used by {@link pickle} and its custom hook). */
export class PickleWriter {
  private buffer = new Uint8Array(1024);
  private length = 0;
  private readonly encoder = new TextEncoder();

  constructor(private readonly custom?: (value: unknown, out: PickleWriter) => boolean) {}

  bytes(...values: number[]): void {
    this.raw(Uint8Array.from(values));
  }

  raw(data: Uint8Array): void {
    if (this.length + data.length > this.buffer.length) {
      const grown = new Uint8Array(Math.max(this.buffer.length * 2, this.length + data.length));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    this.buffer.set(data, this.length);
    this.length += data.length;
  }

  /** GLOBAL `module\nname\n`. */
  global(module: string, name: string): void {
    this.bytes(0x63);
    this.raw(this.encoder.encode(`${module}\n${name}\n`));
  }

  value(value: unknown): void {
    if (this.custom?.(value, this)) return;
    if (value === null || value === undefined) {
      this.bytes(0x4e);
      return;
    }
    if (value === true) {
      this.bytes(0x88);
      return;
    }
    if (value === false) {
      this.bytes(0x89);
      return;
    }
    if (typeof value === 'string') {
      const data = this.encoder.encode(value);
      this.bytes(0x58, ...u32le(data.length));
      this.raw(data);
      return;
    }
    if (typeof value === 'number' && Number.isInteger(value) && Math.abs(value) <= Number.MAX_SAFE_INTEGER) {
      this.integer(BigInt(value));
      return;
    }
    if (typeof value === 'bigint') {
      this.integer(value);
      return;
    }
    if (typeof value === 'number') {
      const data = new Uint8Array(9);
      data[0] = 0x47;
      new DataView(data.buffer).setFloat64(1, value, false);
      this.raw(data);
      return;
    }
    if (value instanceof PickleTuple) {
      if (value.items.length === 0) {
        this.bytes(0x29);
        return;
      }
      this.bytes(0x28);
      for (const item of value.items) this.value(item);
      this.bytes(0x74);
      return;
    }
    if (Array.isArray(value)) {
      this.bytes(0x5d);
      if (value.length === 0) return;
      this.bytes(0x28);
      for (const item of value) this.value(item);
      this.bytes(0x65);
      return;
    }
    if (value instanceof PickleOrderedDict) {
      this.global('collections', 'OrderedDict');
      this.bytes(0x29, 0x52);
      this.items(value.entries);
      return;
    }
    if (value instanceof Map) {
      this.bytes(0x7d);
      this.items(value);
      return;
    }
    throw new Error(`pickle: cannot write ${Object.prototype.toString.call(value)}`);
  }

  finish(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }

  private items(entries: ReadonlyMap<unknown, unknown>): void {
    if (entries.size === 0) return;
    this.bytes(0x28);
    for (const [key, item] of entries) {
      this.value(key);
      this.value(item);
    }
    this.bytes(0x75);
  }

  private integer(value: bigint): void {
    if (value >= 0n && value < 256n) {
      this.bytes(0x4b, Number(value));
      return;
    }
    if (value >= 0n && value < 65536n) {
      this.bytes(0x4d, Number(value & 0xffn), Number(value >> 8n));
      return;
    }
    if (value >= -(2n ** 31n) && value < 2n ** 31n) {
      this.bytes(0x4a, ...u32le(Number(BigInt.asUintN(32, value))));
      return;
    }
    // LONG1: little-endian two's complement, as short as the sign allows.
    const data: number[] = [];
    let rest = value;
    while (true) {
      data.push(Number(rest & 0xffn));
      rest >>= 8n;
      const sign = data[data.length - 1] & 0x80;
      if ((rest === 0n && !sign) || (rest === -1n && sign)) break;
    }
    this.bytes(0x8a, data.length, ...data);
  }
}

function u32le(value: number): number[] {
  return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff];
}
