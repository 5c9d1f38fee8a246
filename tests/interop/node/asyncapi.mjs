// Parses docs/gateway/asyncapi.yaml with the stock @asyncapi/parser, offline (every $ref is a relative file),
// and prints, per message, the channel addresses and the dereferenced schemas of its payload (what is on the
// wire) and of its opened claims (x-opened-claims), as one JSON object. Exit 2 on any error diagnostic.
import { Parser, fromFile } from "@asyncapi/parser";

const ERROR = 0; // DiagnosticSeverity.Error
const { document, diagnostics } = await fromFile(new Parser(), process.argv[2]).parse();
const errors = diagnostics.filter((d) => d.severity === ERROR);
for (const d of errors) process.stderr.write(`${d.code}: ${d.message} at ${JSON.stringify(d.path)}\n`);
if (!document || errors.length) process.exit(2);

function plain(value) {
  return value === undefined ? null : JSON.parse(JSON.stringify(value));
}

const messages = {};
for (const channel of document.allChannels()) {
  for (const message of channel.messages()) {
    const entry = (messages[message.id()] ??= {
      channels: [],
      contentType: message.contentType() ?? null,
      payload: plain(message.payload()?.json()),
      opened: plain(message.extensions().get("x-opened-claims")?.value()),
    });
    entry.channels.push(channel.address());
  }
}
process.stdout.write(JSON.stringify({ version: document.version(), messages }) + "\n");
