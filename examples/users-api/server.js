// Starts the users API on HOST:PORT (defaults 127.0.0.1:3000).

import { createApp } from './app.js';

const DEFAULT_PORT = 3000;
const DEFAULT_HOST = '127.0.0.1';

function readPort() {
  const text = process.env.PORT ?? String(DEFAULT_PORT);
  const port = Number(text);
  if (!/^[0-9]+$/.test(text) || port > 65535) {
    console.error(`users-api: invalid PORT "${text}": expected an integer from 0 to 65535`);
    process.exit(2);
  }

  return port;
}

const port = readPort();
const host = process.env.HOST || DEFAULT_HOST;

const server = createApp().listen(port, host, (err) => {
  if (err) {
    console.error(`users-api: cannot listen on ${host}:${port}: ${err.message}`);
    process.exit(1);
  }

  const address = server.address();
  console.log(`users-api listening on http://${address.address}:${address.port}`);
});

function shutDown(signal) {
  console.log(`users-api: received ${signal}, closing the listener`);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
}

process.on('SIGINT', shutDown);
process.on('SIGTERM', shutDown);
