// Owns: the list of CLI command modules; each exports register(program, ctx). One line per file.
import * as status from './status.js';
import * as diskCreate from './disk-create.js';

export const COMMANDS = [status, diskCreate];
