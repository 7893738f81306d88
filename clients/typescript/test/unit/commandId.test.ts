import assert from "node:assert/strict";
import { test } from "node:test";

import { commandIdTime, isCommandId, newCommandId } from "../../src";

test("lays out a UUIDv7 as RFC 9562's example does", () => {
  const random = Uint8Array.from([0x0c, 0xc3, 0x18, 0xc4, 0xdc, 0x0c, 0x0c, 0x07, 0x39, 0x8f]);
  assert.equal(newCommandId(0x017f22e279b0, random), "017f22e2-79b0-7cc3-98c4-dc0c0c07398f");
});

test("makes canonical lowercase UUIDv7s stamped with the time", () => {
  const before = Date.now();
  const id = newCommandId();
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.ok(isCommandId(id));
  const stamped = commandIdTime(id);
  assert.ok(stamped !== undefined && stamped >= before && stamped <= Date.now());
});

test("sets the version and variant bits whatever the random bytes are", () => {
  for (const fill of [0x00, 0xff]) {
    const id = newCommandId(1, new Uint8Array(10).fill(fill));
    assert.ok(isCommandId(id), id);
  }
});

test("makes a different id each time", () => {
  const ids = new Set(Array.from({ length: 1000 }, () => newCommandId()));
  assert.equal(ids.size, 1000);
});

test("recognises only UUIDv7s in canonical form", () => {
  assert.ok(!isCommandId("4b0e3a3c-3c2e-4d8e-9d3a-0a7e8f9b1c2d")); // version 4
  assert.ok(!isCommandId("017F22E2-79B0-7CC3-98C4-DC0C0C07398F")); // upper case
  assert.ok(!isCommandId("017f22e279b07cc398c4dc0c0c07398f")); // no hyphens
  assert.equal(commandIdTime("not-an-id"), undefined);
});

test("refuses a time a UUIDv7 cannot hold", () => {
  assert.throws(() => newCommandId(-1), RangeError);
  assert.throws(() => newCommandId(2 ** 48), RangeError);
});
