// Owns: kiln's own SSH identity (one ed25519 key pair per agent), which instances/ injects into
// every seed so readiness can log in: loaded from <dir>/id_ed25519, created on first use.
// Must not: write anything but that key pair (folder 0700, files 0600), or ever replace an
// existing key (guests already trust it); the public half is always derived from the private.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, link, mkdir, open, readFile, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { KilnError } from '../errors.js';

// ssh2 is CommonJS: its named exports are not visible to ESM imports, the default one is.
const { utils } = ssh2;

export const AGENT_KEY_FILE = 'id_ed25519';

export class AgentKeys {
  private constructor(
    /** "ssh-ed25519 BASE64 kiln@HOST", ready for authorized_keys / seed public-keys. */
    readonly publicKey: string,
    /** The OpenSSH private key, for ssh2's privateKey. */
    readonly privateKey: Buffer,
    /** Where the private key lives. */
    readonly path: string,
  ) {}

  /** Loads <dir>/id_ed25519, creating the folder and a new key the first time. */
  static async load(dir: string): Promise<AgentKeys> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, AGENT_KEY_FILE);
    const existing: Buffer | undefined = await readFile(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    const privateKey: Buffer = existing ?? (await create(dir, path));
    const publicKey = publicLine(privateKey, path);
    // Other tools (ssh -i, debugging) like to find the public half beside it; it is derived, so
    // rewriting it is always safe.
    await writePrivate(join(dir, `${AGENT_KEY_FILE}.pub`), Buffer.from(publicKey + '\n'));
    return new AgentKeys(publicKey, privateKey, path);
  }
}

function publicLine(privateKey: Buffer, path: string): string {
  const parsed = utils.parseKey(privateKey);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error) {
    throw new KilnError('KILN_CONFIG', `${path} is not a readable SSH private key${key instanceof Error ? `: ${key.message}` : ''}`, { path });
  }
  return `${key.type} ${key.getPublicSSH().toString('base64')} ${key.comment || `kiln@${hostname()}`}`;
}

/** Writes a new key with link(2), so two racing creators agree on one key: the loser reads it. */
async function create(dir: string, path: string): Promise<Buffer> {
  const tmp = join(dir, `.${AGENT_KEY_FILE}.${randomBytes(6).toString('hex')}.tmp`);
  await writePrivate(tmp, generateReadableKey());
  try {
    await link(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  await fsyncDir(dir);
  return readFile(path);
}

/**
 * ssh2 (1.17) writes about 1 in 330 new ed25519 keys in a form its own parser then rejects
 * ("Malformed OpenSSH private key"): generate until the key reads back, so a fresh agent never
 * stores a key it cannot use.
 */
export function generateReadableKey(generate: () => string = () => utils.generateKeyPairSync('ed25519', { comment: `kiln@${hostname()}` }).private): Buffer {
  for (let attempt = 0; attempt < 20; attempt++) {
    const key = Buffer.from(generate());
    const parsed = utils.parseKey(key);
    if (!(parsed instanceof Error) && !(Array.isArray(parsed) && parsed[0] instanceof Error)) return key;
  }
  throw new KilnError('KILN_INTERNAL', 'could not generate a readable ed25519 key in 20 attempts');
}

async function writePrivate(path: string, data: Buffer): Promise<void> {
  const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await chmod(path, 0o600);
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
