import type { Json } from "../api-types.js";
import { prettyJson } from "../format.js";

/**
 * Text exactly as written, in its own scrolling box. Rendered as a text node, so whatever an
 * agent put in it is shown, never interpreted.
 */
export function CodeBlock({ text }: { text: string }) {
  return (
    // biome-ignore lint/a11y/noNoninteractiveTabindex: a box that scrolls must be reachable by keyboard to scroll it.
    <pre className="code" tabIndex={0}>
      {text}
    </pre>
  );
}

export function JsonBlock({ value }: { value: Json | undefined }) {
  return <CodeBlock text={prettyJson(value)} />;
}
