// A real OpenID Connect provider (panva's certified oidc-provider) for the SSO tests.
// Config from the environment: OIDC_CLIENT = {client_id, client_secret, redirect_uris},
// OIDC_ACCOUNTS = {login: {email, email_verified, groups, given_name, family_name}}.
// Listens on a port the kernel picks and prints {"issuer": ...} once it serves.
import http from 'node:http';
import Provider from 'oidc-provider';

const client = JSON.parse(process.env.OIDC_CLIENT);
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS);

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{ ...client, grant_types: ['authorization_code'], response_types: ['code'] }],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['given_name', 'family_name', 'name'],
      groups: ['groups'],
    },
    conformIdTokenClaims: false, // put the requested claims in the id_token itself
    cookies: { keys: ['cordum-test-cookie-key'] },
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    async findAccount(ctx, id) {
      const account = accounts[id];
      if (!account) return undefined;
      return { accountId: id, async claims() { return { sub: id, ...account }; } };
    },
  });
  server.on('request', provider.callback());
  process.stdout.write(JSON.stringify({ issuer }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
