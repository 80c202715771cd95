import { assertEquals } from "../tests/assert.ts";
import { endReason } from "./events.ts";

Deno.test("events: a point-to-point tunnel's end as the driver's DEL_PEER reason", () => {
  assertEquals(endReason({ kind: "expired", message: "keepalive timeout" }), "expired");
  assertEquals(
    endReason({ kind: "aborted", message: "the peer closed the TCP connection", error: false }),
    "transport-disconnect",
  );
  // the driver's ERROR_CONNECTION_ABORTED says no more than that the connection ended
  assertEquals(
    endReason({ kind: "aborted", message: "the TCP connection was closed by the server" }),
    "transport-disconnect",
  );
  // a broken connection, whatever its message says
  assertEquals(
    endReason({ kind: "aborted", message: "TCP stream reset: closed frame", error: true }),
    "transport-error",
  );
  assertEquals(endReason({ kind: "failed", message: "the device was closed" }), null);
});
