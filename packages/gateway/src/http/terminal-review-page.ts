/**
 * The page a browser gets where the console cannot serve a reviewer (it is not built, or no
 * sign-in is configured): how to review from a terminal instead. It names the request, and
 * holds nothing of it.
 */

/** `why` is the gateway's own HTML; `id`, when given, only letters, digits and `_`. */
export function terminalReviewPage(why: string, id: string | undefined): string {
  const title = id === undefined ? "Airlock" : `Airlock · request ${id}`;
  const heading =
    id === undefined
      ? "Review from a terminal"
      : `Request <code>${id}</code> is waiting for review`;
  const commands =
    id === undefined
      ? 'airlock requests list\nairlock requests show ID\nairlock requests approve ID --comment "why"'
      : `airlock requests show ${id}\nairlock requests approve ${id} --comment "why"\nairlock requests deny ${id} --comment "why"`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}code{background:#f2f2f2;padding:.1rem .3rem;border-radius:3px}</style>
</head><body>
<h1>${heading}</h1>
<p>${why} Review ${id === undefined ? "requests" : "the request"} from a terminal with your personal token:</p>
<pre><code>export AIRLOCK_TOKEN=alk_…   # airlock token create --reviewer you@example.com
${commands}</code></pre>
</body></html>
`;
}
