// Owns: the systemd notification protocol (READY=1, STATUS=, WATCHDOG=1, STOPPING=1) over the
// datagram socket named by NOTIFY_SOCKET, through libc (Node has no unix datagram sockets).
// Must not: fail the daemon when not run by systemd: without NOTIFY_SOCKET every call is a no-op.
import koffi, { type LibraryHandle } from 'koffi';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;

interface NotifyBindings {
  socket: (domain: number, type: number, protocol: number) => number;
  sendto: (fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number) => number;
  close: (fd: number) => number;
}

let bindings: NotifyBindings | undefined;

function libc(): NotifyBindings {
  if (bindings) return bindings;
  const lib: LibraryHandle = koffi.load('libc.so.6');
  bindings = {
    socket: lib.func('int socket(int domain, int type, int protocol)') as NotifyBindings['socket'],
    sendto: lib.func('long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)') as NotifyBindings['sendto'],
    close: lib.func('int close(int fd)') as NotifyBindings['close'],
  };
  return bindings;
}

function sockaddrUn(path: string): { addr: Buffer; len: number } {
  // '@name' means the abstract namespace: the path starts with a NUL byte.
  const name = path.startsWith('@') ? Buffer.concat([Buffer.from([0]), Buffer.from(path.slice(1))]) : Buffer.from(path);
  if (name.length > 107) throw new Error(`NOTIFY_SOCKET path too long: ${path}`);
  const addr = Buffer.alloc(110);
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, 2);
  return { addr, len: 2 + name.length + (path.startsWith('@') ? 0 : 1) };
}

/** Sends one notification; returns false when not under systemd (no NOTIFY_SOCKET) or on failure. */
export function sdNotify(state: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const target = env.NOTIFY_SOCKET;
  if (!target || !(target.startsWith('/') || target.startsWith('@'))) return false;
  const c = libc();
  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  try {
    const { addr, len } = sockaddrUn(target);
    const msg = Buffer.from(state);
    return c.sendto(fd, msg, msg.length, MSG_NOSIGNAL, addr, len) === msg.length;
  } finally {
    c.close(fd);
  }
}

/** Interval at which WATCHDOG=1 must be sent, from WATCHDOG_USEC (half of it, as systemd advises). */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== process.pid) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}
