// Owns: the public face of seed/: what instances/ and the CLI import. Must not: hold logic.
export { buildSeed, seedFiles, seedLabel, writeSeedFile } from './build.js';
export { SEED_FORMATS, type SeedFormat, type SeedSpec } from './spec.js';
export { writeIso9660, type IsoFileInput, type IsoOptions } from './iso9660/writer.js';
export { parseMetaData, checkUserData, checkNetworkConfig, checkNetworkData } from './content.js';
