// The sample "unprotected API" that Portcullis is put in front of.
//
// It has no authentication and no rate limit on purpose: the gateway adds
// both. It also keeps Express's default `X-Powered-By: Express` header, which
// the gateway is expected to strip from responses.

import express from 'express';

const MAX_NAME_LENGTH = 100;
const MAX_EMAIL_LENGTH = 254;
const MAX_BODY_SIZE = '16kb';

// A deliberately loose address check: one "@", no spaces, a dot in the domain.
const EMAIL_PATTERN = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

const SAMPLE_USERS = [
  { id: 1, name: 'Ada Quill', email: 'ada.quill@example.com' },
  { id: 2, name: 'Bruno Marsh', email: 'bruno.marsh@example.com' },
  { id: 3, name: 'Chiara Vale', email: 'chiara.vale@example.com' },
];

// Maps body-parser error types to the `error` code and fixed message sent to
// the client, so response bodies do not depend on the Node.js version.
const BODY_ERRORS = {
  'entity.parse.failed': ['invalid_json', 'request body is not valid JSON'],
  'entity.too.large': ['payload_too_large', `request body exceeds ${MAX_BODY_SIZE}`],
  'encoding.unsupported': ['unsupported_encoding', 'unsupported Content-Encoding'],
  'charset.unsupported': ['unsupported_charset', 'unsupported charset: use utf-8'],
};

/**
 * Creates the users API as an Express 5 application.
 *
 * Each call gets its own in-memory copy of the sample users, so tests can
 * create independent instances. Nothing is persisted.
 */
export function createApp() {
  const users = new Map(SAMPLE_USERS.map((user) => [user.id, { ...user }]));
  let nextId = Math.max(...users.keys()) + 1;

  const app = express();
  app.use(express.json({ limit: MAX_BODY_SIZE }));

  app.get('/users', (req, res) => {
    res.json([...users.values()]);
  });

  app.get('/users/:id', (req, res) => {
    const user = users.get(parseId(req.params.id));
    if (!user) {
      sendError(res, 404, 'not_found', `user ${req.params.id} not found`);
      return;
    }

    res.json(user);
  });

  app.post('/users', (req, res) => {
    const problem = validateNewUser(req.body);
    if (problem) {
      sendError(res, 400, 'invalid_body', problem);
      return;
    }

    const user = { id: nextId, name: req.body.name.trim(), email: req.body.email };
    nextId += 1;
    users.set(user.id, user);
    res.status(201).location(`/users/${user.id}`).json(user);
  });

  app.delete('/users/:id', (req, res) => {
    if (!users.delete(parseId(req.params.id))) {
      sendError(res, 404, 'not_found', `user ${req.params.id} not found`);
      return;
    }

    res.status(204).end();
  });

  app.use((req, res) => {
    sendError(res, 404, 'not_found', `no route for ${req.method} ${req.path}`);
  });

  app.use(handleError);

  return app;
}

// Returns the numeric id, or undefined when the path segment is not a
// positive decimal integer (such an id matches no user).
function parseId(text) {
  if (!/^[1-9][0-9]{0,15}$/.test(text)) {
    return undefined;
  }

  return Number(text);
}

// Returns a message describing what is wrong with a POST /users body, or
// null when the body is a valid new user.
function validateNewUser(body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return 'expected a JSON object body with "name" and "email" (Content-Type: application/json)';
  }

  const unknown = Object.keys(body).filter((key) => key !== 'name' && key !== 'email');
  if (unknown.length > 0) {
    return `unknown field "${unknown[0]}": only "name" and "email" are accepted`;
  }

  if (typeof body.name !== 'string' || body.name.trim() === '') {
    return '"name" must be a non-empty string';
  }

  if (body.name.length > MAX_NAME_LENGTH) {
    return `"name" must be at most ${MAX_NAME_LENGTH} characters`;
  }

  if (typeof body.email !== 'string' || !EMAIL_PATTERN.test(body.email)) {
    return '"email" must be an email address such as "name@example.com"';
  }

  if (body.email.length > MAX_EMAIL_LENGTH) {
    return `"email" must be at most ${MAX_EMAIL_LENGTH} characters`;
  }

  return null;
}

function sendError(res, status, code, message) {
  res.status(status).json({ error: code, message });
}

// Turns body-parser failures into JSON 4xx responses and anything else into a
// plain 500, keeping stack traces out of response bodies.
function handleError(err, req, res, next) {
  if (res.headersSent) {
    next(err);
    return;
  }

  const status = Number.isInteger(err.status) && err.status >= 400 && err.status < 500
    ? err.status
    : 500;

  if (status === 500) {
    console.error(`users-api: ${req.method} ${req.path} failed: ${err.message}`);
    sendError(res, 500, 'internal_error', 'internal server error');
    return;
  }

  const [code, message] = BODY_ERRORS[err.type] ?? ['bad_request', 'bad request'];
  sendError(res, status, code, message);
}
