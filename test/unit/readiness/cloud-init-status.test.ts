import t from 'tap';
import { cleanStatusOutput, parseCloudInitStatus } from '../../../agent/readiness/cloud-init-status.js';

t.test('done (22.4 --long output, with progress dots)', async (t) => {
  const out = '.........\nstatus: done\ntime: Fri, 27 Nov 2026 09:00:00 +0000\ndetail:\nDataSourceNoCloud [seed=/dev/sr0][dsmode=net]\n';
  const v = parseCloudInitStatus(out, '', 0);
  t.equal(v.kind, 'done');
  t.equal(v.kind === 'done' && v.detail.split('\n')[0], 'status: done');
  t.match(v.kind === 'done' ? v.detail : '', /DataSourceNoCloud/);
});

t.test('degraded done (23.4+, exit 2) is done', async (t) => {
  const out = 'status: done\nextended_status: degraded done\nboot_status_code: enabled-by-generator\nerrors: []\nrecoverable_errors:\nWARNING:\n\t- deprecated key\n';
  t.equal(parseCloudInitStatus(out, '', 2).kind, 'done');
});

t.test('error and disabled are errors carrying the detail', async (t) => {
  const e = parseCloudInitStatus("status: error\ntime: x\ndetail:\n('scripts_user', RuntimeError('runparts'))\n", '', 1);
  t.equal(e.kind, 'error');
  t.match(e.kind === 'error' ? e.detail : '', /scripts_user/);
  const d = parseCloudInitStatus('status: disabled\n', '', 0);
  t.equal(d.kind, 'error');
  t.match(d.kind === 'error' ? d.detail : '', /disabled/);
});

t.test('running / not started / no answer: pending; no command: missing', async (t) => {
  t.equal(parseCloudInitStatus('status: running\n', '', 0).kind, 'pending');
  t.equal(parseCloudInitStatus('status: not started\n', '', 0).kind, 'pending');
  t.equal(parseCloudInitStatus('', '', 255).kind, 'pending');
  t.equal(parseCloudInitStatus('', 'sh: 1: cloud-init: not found\n', 127).kind, 'missing');
  t.equal(parseCloudInitStatus('', '', 127).kind, 'missing');
});

t.test('cleanStatusOutput drops dots, CRs and blank lines', async (t) => {
  t.equal(cleanStatusOutput('...\r\n\r\n..status: done\r\n'), 'status: done');
});
