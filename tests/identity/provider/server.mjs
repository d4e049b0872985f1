// The identity provider the identity tests sign in with: panva's oidc-provider (OpenID certified)
// on 127.0.0.1 at a free port. It prints one JSON line {"issuer": ...} once it listens.
//
// Environment: CATALOG_REDIRECT_URIS and CATALOG_POST_LOGOUT_URIS (comma separated), CATALOG_CLIENT_SECRET,
// PIPELINE_CLIENT_SECRET, API_RESOURCE (the audience of the pipeline's JWT access tokens).
//
// Besides the provider's own endpoints, /__test/ lets a test change a user (groups, amr) and make the
// next token response carry an ID token with one signature byte flipped.
import crypto from 'node:crypto';
import http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const env = (name, fallback) => process.env[name] || fallback;
const list = (value) => value.split(',').map((item) => item.trim()).filter(Boolean);

const API_RESOURCE = env('API_RESOURCE', 'https://catalog.test/api');
const PASSWORD = 'password';

// alice is a security engineer, bob a data engineer, carol in no group the catalog maps.
const users = {
  alice: { name: 'Alice Example', email: 'alice@example.test', groups: ['security-engineers', 'staff'], amr: ['pwd', 'mfa'] },
  bob: { name: 'Bob Example', email: 'bob@example.test', groups: ['data-engineers'], amr: ['pwd'] },
  carol: { name: 'Carol Example', email: 'carol@example.test', groups: ['staff'], amr: ['pwd'] },
};
const test = { tamperNextIdToken: false };

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };

let provider;
const server = http.createServer((req, res) => handle(req, res).catch((error) => {
  console.error(error);
  res.statusCode = 500;
  res.end('provider error');
}));

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString();
  if ((req.headers['content-type'] || '').includes('application/json')) return JSON.parse(text || '{}');
  return Object.fromEntries(new URLSearchParams(text));
}

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, clientId, message = '') {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test identity provider: sign in</title></head>
<body><h1>Test identity provider</h1><p>Sign in to ${escape(clientId)}</p>
${message ? `<p role="alert">${escape(message)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Username <input name="login" autofocus></label>
<label>Password <input name="password" type="password"></label>
<button type="submit">Sign in</button></form></body></html>`;
}

function flipSignatureByte(jwt) {
  const [header, payload, signature] = jwt.split('.');
  const at = Math.floor(signature.length / 2);
  const flipped = signature[at] === 'A' ? 'B' : 'A';
  return [header, payload, signature.slice(0, at) + flipped + signature.slice(at + 1)].join('.');
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const testUser = url.pathname.match(/^\/__test\/users\/([a-z0-9-]+)$/);
  if (testUser && req.method === 'POST') {
    // Changes a user, or adds one (the benchmark signs in many).
    const name = testUser[1];
    users[name] ||= { name, email: `${name}@example.test`, groups: [], amr: ['pwd'] };
    const user = users[name];
    Object.assign(user, await readForm(req));
    res.setHeader('content-type', 'application/json');
    return res.end(JSON.stringify(user));
  }
  if (url.pathname === '/__test/tamper-next-id-token' && req.method === 'POST') {
    test.tamperNextIdToken = true;
    res.statusCode = 204;
    return res.end();
  }
  const interaction = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (interaction) {
    const details = await provider.interactionDetails(req, res);
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.setHeader('cache-control', 'no-store');
    if (!interaction[2]) return res.end(loginPage(details.uid, details.params.client_id));
    const form = await readForm(req);
    const user = users[form.login];
    if (!user || form.password !== PASSWORD) {
      return res.end(loginPage(details.uid, details.params.client_id, 'Wrong username or password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: form.login, amr: user.amr } }, { mergeWithLastSubmission: false });
  }
  if (url.pathname === '/token' && test.tamperNextIdToken) {
    test.tamperNextIdToken = false;
    // Same length, one signature character changed: the catalog must refuse the ID token.
    const { write, end } = res;
    const chunks = [];
    res.write = (chunk) => { chunks.push(Buffer.from(chunk)); return true; };
    res.end = (chunk) => {
      if (chunk) chunks.push(Buffer.from(chunk));
      let body = Buffer.concat(chunks).toString();
      try {
        const token = JSON.parse(body);
        if (token.id_token) token.id_token = flipSignatureByte(token.id_token);
        body = JSON.stringify(token);
      } catch { /* not JSON: pass through */ }
      res.write = write;
      res.end = end;
      return res.end(body);
    };
  }
  return provider.callback()(req, res);
}

server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'catalog',
        client_secret: env('CATALOG_CLIENT_SECRET', 'catalog-secret'),
        redirect_uris: list(env('CATALOG_REDIRECT_URIS', 'http://127.0.0.1:8000/oidc/callback/')),
        post_logout_redirect_uris: list(env('CATALOG_POST_LOGOUT_URIS', 'http://127.0.0.1:8000/login/')),
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: 'pipeline',
        client_secret: env('PIPELINE_CLIENT_SECRET', 'pipeline-secret'),
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [signingKey] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    // Every client must use PKCE (the catalog does).
    pkce: { required: () => true },
    scopes: ['openid', 'email', 'profile', 'groups', 'api:read', 'api:write'],
    claims: {
      acr: null, sid: null, auth_time: null, iss: null,
      // amr with every ID token: the catalog counts a second factor done here.
      openid: ['sub', 'amr'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    // The ID token carries the scopes' claims (groups, e-mail, name), not only the userinfo endpoint.
    conformIdTokenClaims: false,
    async findAccount(ctx, id) {
      const user = users[id];
      if (!user) return undefined;
      return {
        accountId: id,
        async claims() {
          return {
            sub: id, email: user.email, email_verified: true, name: user.name, preferred_username: id, groups: user.groups,
          };
        },
      };
    },
    // The catalog is a first-party client: its grant is given without a consent page.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const existing = await ctx.oidc.provider.Grant.find(grantId);
        if (existing) return existing;
      }
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope(ctx.oidc.requestParamScopes ? [...ctx.oidc.requestParamScopes].join(' ') : 'openid');
      grant.addOIDCClaims(['email', 'email_verified', 'name', 'preferred_username', 'groups']);
      await grant.save();
      return grant;
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => API_RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resourceIndicator) => {
          if (resourceIndicator !== API_RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: 'api:read api:write',
            audience: resourceIndicator,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ttl: { Session: 3600, Interaction: 600, Grant: 3600, AccessToken: 600, IdToken: 600, AuthorizationCode: 60, ClientCredentials: 600 },
  });
  provider.proxy = false;
  console.log(JSON.stringify({ issuer }));
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
