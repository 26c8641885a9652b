// Owns: creating the pino root logger. Modules receive a logger and call log.child({ component }).
// Must not: hold a module-level logger instance; main.ts (or a test) creates one and passes it down.
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: string;
  /** Where JSON lines go; stdout by default (journald picks it up under systemd). */
  destination?: DestinationStream;
}

export function createLogger(options: LogOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: 'kilnd' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.err },
    },
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** A logger that drops everything, for tests and offline CLI commands. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
