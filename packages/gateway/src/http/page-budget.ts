/**
 * How much one page of answers may hold, whatever its limit: an audit event, and a request's
 * view, can each hold an action's whole input (up to server.maxBodyBytes), and a page of a
 * thousand of them would be an answer of a gigabyte, held whole in memory.
 */
const PAGE_CHARS = 4 * 1024 * 1024;

/**
 * Counts the characters (as JSON) of what goes on a page: `fits` says whether one more item
 * does. The first always does, so a page is never empty while items remain.
 */
export function createPageBudget(maxChars = PAGE_CHARS): { fits(item: unknown): boolean } {
  let chars = 0;
  let items = 0;
  return {
    fits(item) {
      chars += JSON.stringify(item).length;
      if (items > 0 && chars > maxChars) return false;
      items++;
      return true;
    },
  };
}
