import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { createApp } from '../app.js';

// Starts a fresh app on a free loopback port and returns its base URL.
async function startApp() {
  const server = await new Promise((resolve, reject) => {
    const listening = createApp().listen(0, '127.0.0.1', (err) => (err ? reject(err) : resolve(listening)));
  });

  return { server, baseUrl: `http://127.0.0.1:${server.address().port}` };
}

function postJson(url, body) {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

describe('users api', () => {
  let server;
  let baseUrl;

  before(async () => {
    ({ server, baseUrl } = await startApp());
  });

  after(() => {
    server.closeAllConnections();
    server.close();
  });

  it('lists the sample users', async () => {
    const res = await fetch(`${baseUrl}/users`);
    const users = await res.json();

    assert.equal(res.status, 200);
    assert.equal(users.length, 3);
    assert.deepEqual(users[0], { id: 1, name: 'Ada Quill', email: 'ada.quill@example.com' });
  });

  it('sends the default X-Powered-By header', async () => {
    const res = await fetch(`${baseUrl}/users`);

    assert.equal(res.headers.get('x-powered-by'), 'Express');
  });

  it('returns one user by id', async () => {
    const res = await fetch(`${baseUrl}/users/2`);

    assert.equal(res.status, 200);
    assert.equal((await res.json()).name, 'Bruno Marsh');
  });

  it('returns 404 json for a missing user', async () => {
    const cases = [
      ['unknown numeric id', '/users/999'],
      ['non-numeric id', '/users/abc'],
      ['id with leading zero', '/users/01'],
    ];

    for (const [description, path] of cases) {
      const res = await fetch(`${baseUrl}${path}`);
      assert.equal(res.status, 404, description);
      assert.equal((await res.json()).error, 'not_found', description);
    }
  });

  it('creates then deletes a user', async () => {
    const created = await postJson(`${baseUrl}/users`, { name: 'Dora Fenn', email: 'dora.fenn@example.com' });
    const user = await created.json();

    assert.equal(created.status, 201);
    assert.equal(created.headers.get('location'), `/users/${user.id}`);
    assert.deepEqual(user, { id: 4, name: 'Dora Fenn', email: 'dora.fenn@example.com' });
    assert.equal((await fetch(`${baseUrl}/users/4`)).status, 200);

    const deleted = await fetch(`${baseUrl}/users/4`, { method: 'DELETE' });
    assert.equal(deleted.status, 204);
    assert.equal(await deleted.text(), '');

    const again = await fetch(`${baseUrl}/users/4`, { method: 'DELETE' });
    assert.equal(again.status, 404);
  });

  it('rejects invalid bodies with 400', async () => {
    const cases = [
      ['malformed JSON', '{"name":', 'invalid_json'],
      ['JSON array', [], 'invalid_body'],
      ['missing email', { name: 'Eli Stone' }, 'invalid_body'],
      ['blank name', { name: '  ', email: 'eli.stone@example.com' }, 'invalid_body'],
      ['email without domain dot', { name: 'Eli Stone', email: 'eli@example' }, 'invalid_body'],
      ['unknown field', { name: 'Eli Stone', email: 'eli.stone@example.com', admin: true }, 'invalid_body'],
      ['name too long', { name: 'x'.repeat(101), email: 'eli.stone@example.com' }, 'invalid_body'],
    ];

    for (const [description, body, code] of cases) {
      const res = await postJson(`${baseUrl}/users`, body);
      assert.equal(res.status, 400, description);
      assert.equal((await res.json()).error, code, description);
    }
  });

  it('rejects a body that is not JSON', async () => {
    const res = await fetch(`${baseUrl}/users`, { method: 'POST', body: 'name=Eli' });

    assert.equal(res.status, 400);
    assert.equal((await res.json()).error, 'invalid_body');
  });

  it('rejects a body over 16 KiB with 413', async () => {
    const res = await postJson(`${baseUrl}/users`, { name: 'x'.repeat(20 * 1024), email: 'a@example.com' });

    assert.equal(res.status, 413);
    assert.equal((await res.json()).error, 'payload_too_large');
  });

  it('returns 404 json for an unknown route', async () => {
    const res = await fetch(`${baseUrl}/admin`);

    assert.equal(res.status, 404);
    assert.deepEqual(await res.json(), { error: 'not_found', message: 'no route for GET /admin' });
  });
});

describe('createApp', () => {
  it('gives each app its own users', async () => {
    const first = await startApp();
    const second = await startApp();

    try {
      await fetch(`${first.baseUrl}/users/1`, { method: 'DELETE' });

      assert.equal((await fetch(`${first.baseUrl}/users/1`)).status, 404);
      assert.equal((await fetch(`${second.baseUrl}/users/1`)).status, 200);
    } finally {
      for (const { server } of [first, second]) {
        server.closeAllConnections();
        server.close();
      }
    }
  });
});
