#!/usr/bin/env node
// A static file server on loopback for the main job and benchmarks: serves one directory with
// Content-Length, Last-Modified, ETag and single Range requests. Prints its base URL on stdout.
// Usage: serve.mjs DIR [PORT]
import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { join, normalize } from 'node:path';

const root = process.argv[2];
const port = Number(process.argv[3] ?? 0);
if (!root) {
  console.error('usage: serve.mjs DIR [PORT]');
  process.exit(2);
}

const server = createServer((req, res) => {
  const rel = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
  const path = join(root, rel);
  let st;
  try {
    st = statSync(path);
    if (!st.isFile()) throw new Error('not a file');
  } catch {
    res.writeHead(404).end();
    return;
  }
  const etag = `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
  const headers = { 'last-modified': st.mtime.toUTCString(), etag, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' };
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  const ifRange = req.headers['if-range'];
  if (range && (!ifRange || ifRange === etag || ifRange === headers['last-modified'])) {
    const start = Number(range[1]);
    const end = range[2] ? Math.min(Number(range[2]), st.size - 1) : st.size - 1;
    if (start >= st.size) {
      res.writeHead(416, { 'content-range': `bytes */${st.size}` }).end();
      return;
    }
    res.writeHead(206, { ...headers, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${st.size}` });
    if (req.method === 'HEAD') return res.end();
    createReadStream(path, { start, end, highWaterMark: 1 << 20 }).pipe(res);
    return;
  }
  res.writeHead(200, { ...headers, 'content-length': st.size });
  if (req.method === 'HEAD') return res.end();
  createReadStream(path, { highWaterMark: 1 << 20 }).pipe(res);
});

server.listen(port, '127.0.0.1', () => {
  const addr = server.address();
  console.log(`http://127.0.0.1:${addr.port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
