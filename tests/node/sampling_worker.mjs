// A sampling-capable MCP client built on the official TypeScript SDK (@modelcontextprotocol/sdk),
// driving the real `mcptb-server` over stdio. tests/test_typescript_client.py runs it.
//
// usage: node sampling_worker.mjs <python> <socket> <backend> [extra mcptb-server args...]
//   python   the interpreter that has mcp_server importable (the test passes sys.executable)
//   socket   the relay's Unix socket (mcptb-server --socket)
//   backend  asyncio | trio (mcptb-server --backend)
//   The server runs in this process's working directory (the test starts node with cwd=<repo root>),
//   or in $MCPTB_SERVER_CWD when set. Its stderr goes to this process's stderr.
//
// What it does:
//   - connects with the 2025 handshake (initialize -> notifications/initialized), client name
//     CLIENT_NAME, capabilities {sampling: {}};
//   - answers every sampling/createMessage with a deterministic reply:
//       {role: "assistant", model: "ts-scripted-model", stopReason: "endTurn",
//        content: {type: "text", text: "ts-sdk says: <last user text>"}}
//   - stdout protocol, one line each:
//       {"event":"connected","server":{...},"capabilities":{...}}   after connect
//       READY                                                        right after that
//       {"event":"sampling","params":{...}}                          per createMessage, before answering
//       {"event":"server_closed"}                                    if the server went away on its own
//       {"event":"closed"}                                           after a clean shutdown
//   - stays alive until its stdin closes or it gets SIGTERM/SIGINT, then closes the client (which
//     ends the server's stdin and waits for it) and exits 0.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";

export const CLIENT_NAME = "mcptb-ts-sdk-test-client";
export const CLIENT_VERSION = "1.32.2-test";
export const MODEL = "ts-scripted-model";

const [python, socket, backend, ...extra] = process.argv.slice(2);
if (!python || !socket || !backend) {
  process.stderr.write("usage: node sampling_worker.mjs <python> <socket> <backend> [extra server args...]\n");
  process.exit(2);
}

function emit(line) {
  process.stdout.write((typeof line === "string" ? line : JSON.stringify(line)) + "\n");
}

function textOf(content) {
  const blocks = Array.isArray(content) ? content : [content];
  return blocks.filter((b) => b && b.type === "text").map((b) => b.text).join(" ");
}

function lastUserText(messages) {
  for (const message of [...messages].reverse()) {
    if (message.role === "user") {
      const text = textOf(message.content);
      if (text) return text;
    }
  }
  return "";
}

const transport = new StdioClientTransport({
  command: python,
  args: ["-m", "mcp_server", "--socket", socket, "--backend", backend, ...extra],
  cwd: process.env.MCPTB_SERVER_CWD ?? process.cwd(),
  env: { ...getDefaultEnvironment(), PYTHONUNBUFFERED: "1" },
  stderr: "inherit",
});
const client = new Client({ name: CLIENT_NAME, version: CLIENT_VERSION }, { capabilities: { sampling: {} } });

client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
  emit({ event: "sampling", params: request.params });
  return {
    role: "assistant",
    model: MODEL,
    stopReason: "endTurn",
    content: { type: "text", text: `ts-sdk says: ${lastUserText(request.params.messages)}` },
  };
});

let shuttingDown = false;
client.onclose = () => {
  if (!shuttingDown) {
    emit({ event: "server_closed" });
    process.exit(1);
  }
};
client.onerror = (error) => process.stderr.write(`sampling_worker: client error: ${error?.stack ?? error}\n`);

async function shutdown(why) {
  if (shuttingDown) return;
  shuttingDown = true;
  process.stderr.write(`sampling_worker: shutting down (${why})\n`);
  const t0 = Date.now();
  try {
    // ends the server's stdin, waits up to 2 s for it to exit, then SIGTERM (2 s), then SIGKILL
    await client.close();
  } catch (error) {
    process.stderr.write(`sampling_worker: close failed: ${error?.stack ?? error}\n`);
  }
  process.stderr.write(`sampling_worker: client closed in ${Date.now() - t0} ms\n`);
  emit({ event: "closed" });
  process.exit(0);
}

process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
process.stdin.on("end", () => shutdown("stdin closed"));
process.stdin.on("close", () => shutdown("stdin closed"));
process.stdin.resume();

try {
  await client.connect(transport);
} catch (error) {
  process.stderr.write(`sampling_worker: connect failed: ${error?.stack ?? error}\n`);
  process.exit(1);
}
emit({ event: "connected", server: client.getServerVersion(), capabilities: client.getServerCapabilities() });
emit("READY");
