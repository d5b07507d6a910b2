/**
 * An e-mail as reviewers and owners are known by: lowercased, as the config holds them. Unicode
 * lowercasing folds two non-ASCII letters into ASCII (the Kelvin sign into k, İ into i and a
 * dot), which would turn an address a chat vouched for into someone else's; such an address is
 * nobody's, so there is no key for it.
 */
export function emailKey(email: string): string | undefined {
  const key = email.toLowerCase();
  return asciiLength(key) === asciiLength(email) ? key : undefined;
}

function asciiLength(text: string): number {
  return text.replace(/[\u0080-\uffff]/g, "").length;
}
