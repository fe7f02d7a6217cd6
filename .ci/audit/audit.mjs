// The GraphQL-over-HTTP audit of graphql-http (its `serverAudits`) against a live server.
//
//   node audit.mjs URL
//
// Every MUST audit has to pass; SHOULD and MAY results are printed for information only.
// Exits 1 when a MUST fails (or an audit throws), 0 otherwise. Run by .ci/audit/run.
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs URL');
  process.exit(2);
}

// One audit's response, for the log: status, content type and the start of the body.
async function describe(response) {
  if (!response || typeof response.status !== 'number') return '';
  let body = '';
  try {
    body = await response.clone().text();
  } catch {
    try {
      body = await response.text();
    } catch {
      body = '(body already read)';
    }
  }
  if (body.length > 400) body = `${body.slice(0, 400)}…`;
  return `\n      -> ${response.status} ${response.headers.get('content-type') ?? '(no content-type)'} ${body}`;
}

const counts = { MUST: [0, 0], SHOULD: [0, 0], MAY: [0, 0] };
let failedMust = 0;
for (const audit of serverAudits({ url })) {
  const level = audit.name.split(' ', 1)[0];
  let result;
  try {
    result = await audit.fn();
  } catch (err) {
    // The audit function throws only on a fatal problem (e.g. the server is unreachable).
    result = { status: 'error', reason: `audit threw: ${err?.stack ?? err}` };
  }
  const ok = result.status === 'ok';
  counts[level][ok ? 0 : 1] += 1;
  if (ok) {
    console.log(`  ok    [${audit.id}] ${audit.name}`);
    continue;
  }
  const fatal = level === 'MUST' || result.status === 'error';
  if (fatal) failedMust += 1;
  const tag = fatal ? 'FAIL ' : 'info ';
  console.log(`  ${tag} [${audit.id}] ${audit.name}: ${result.reason}${await describe(result.response)}`);
}

const line = (level) => `${level} ${counts[level][0]}/${counts[level][0] + counts[level][1]}`;
console.log(`graphql-http: ${line('MUST')} passed; ${line('SHOULD')}, ${line('MAY')} passed (info only)`);
process.exit(failedMust === 0 ? 0 : 1);
