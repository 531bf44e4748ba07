// The Anthropic TypeScript SDK's default tool runner (@anthropic-ai/sdk >= 1.15) against the relay.
// tests/test_continuations.py runs it.
//
// usage: node thread_tool_runner.mjs <base url> [stream]
//
// The runner goes over a message thread (beta message-threads-2026-08-12): its first request sends
// `thread: {"type": "create"}` with the whole conversation, each later one `thread: {"type":
// "continue", "previous_message_id": <the last reply's id>}` with only the new messages (the
// tool_result); on a 404 `thread_not_found` it replays the whole history under a new thread, on a 400
// `thread_unsupported_request` it goes on without a thread.
//
// It offers one tool, get_weather, whose result is "sunny in <city>", and prints one JSON line per
// assistant message the runner yields ({"event":"message","id":...,"stop_reason":...,"content":[...]}),
// then {"event":"done"}; an error is {"event":"error","status":...,"error":...} and exit code 1.
import Anthropic from "@anthropic-ai/sdk";
import { betaTool } from "@anthropic-ai/sdk/helpers/beta/json-schema";

const [baseURL, mode] = process.argv.slice(2);
const client = new Anthropic({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 30_000 });
const weather = betaTool({
  name: "get_weather",
  description: "Weather for a city",
  inputSchema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  run: async ({ city }) => `sunny in ${city}`,
});

try {
  const runner = client.beta.messages.toolRunner({
    model: "claude-x",
    max_tokens: 100,
    system: "Be brief.",
    messages: [{ role: "user", content: "weather in Paris?" }],
    tools: [weather],
    stream: mode === "stream",
  });
  for await (const item of runner) {
    const message = mode === "stream" ? await item.finalMessage() : item;
    const { id, stop_reason, content } = message;
    console.log(JSON.stringify({ event: "message", id, stop_reason, content }));
  }
  console.log(JSON.stringify({ event: "done" }));
} catch (error) {
  console.log(JSON.stringify({ event: "error", status: error.status ?? null, error: String(error) }));
  process.exitCode = 1;
}
