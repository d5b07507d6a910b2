/** The signed-in reviewer, loaded once by the app and read by any page that needs it. */
import { createContext, useContext } from "react";
import type { Session } from "./api-types.js";

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside of a signed-in app");
  return session;
}
