// Owns: the list of CLI command modules; each exports register(program, ctx). One line per file.
import * as status from './status.js';
import * as diskCreate from './disk-create.js';
import * as diskInspect from './disk-inspect.js';
import * as instanceCreate from './instance-create.js';
import * as instanceLs from './instance-ls.js';
import * as instanceShow from './instance-show.js';
import * as instanceStart from './instance-start.js';
import * as instanceStop from './instance-stop.js';
import * as instanceRm from './instance-rm.js';
import * as completion from './completion.js';
import * as seedBuild from './seed-build.js';
import * as imageCommands from './image-commands.js';

export const COMMANDS = [status, imageCommands, diskCreate, diskInspect, seedBuild, instanceCreate, instanceLs, instanceShow, instanceStart, instanceStop, instanceRm, completion];
