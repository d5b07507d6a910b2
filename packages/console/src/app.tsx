/** The console's shell: who is signed in, the header, and the page for the current path. */
import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError, api, currentPath, loginUrl } from "./api.js";
import type { Session } from "./api-types.js";
import { Header } from "./components/header.js";
import { ErrorState, Loading } from "./components/states.js";
import { forgetDrafts } from "./components/vote-panel.js";
import { useResource } from "./hooks.js";
import { LiveProvider } from "./live.js";
import { AuditPage } from "./pages/audit-page.js";
import { HistoryPage } from "./pages/history-page.js";
import { InboxPage } from "./pages/inbox-page.js";
import { RequestPage } from "./pages/request-page.js";
import { RulesPage } from "./pages/rules-page.js";
import { NotFoundPage, SignedOutPage } from "./pages/simple-pages.js";
import { matchRoute, useLocation } from "./router.js";
import { SessionContext } from "./session.js";

function Page({ pathname, search }: { pathname: string; search: string }) {
  const route = matchRoute(pathname);
  switch (route.page) {
    case "inbox":
      return <InboxPage />;
    case "request":
      // Keyed, so that another request starts from a clean page (comment, notices).
      return <RequestPage key={route.id} id={route.id} />;
    case "history":
      return <HistoryPage search={search} />;
    case "audit":
      return <AuditPage search={search} />;
    case "rules":
      return <RulesPage />;
    case "not-found":
      return <NotFoundPage />;
  }
}

function Shell({ session, onSignedOut }: { session: Session; onSignedOut: () => void }) {
  const { pathname, search } = useLocation();
  const main = useRef<HTMLElement>(null);
  const shown = useRef(pathname);
  const [signingOut, setSigningOut] = useState(false);
  const [signOutError, setSignOutError] = useState<unknown>();

  // After an in-app navigation, move focus to the new content, as a page load would.
  useEffect(() => {
    if (shown.current === pathname) return;
    shown.current = pathname;
    main.current?.focus({ preventScroll: true });
  }, [pathname]);

  const signOut = useCallback(async () => {
    setSigningOut(true);
    setSignOutError(undefined);
    try {
      await api.logout(session.csrfToken);
      onSignedOut();
    } catch (error) {
      if (error instanceof ApiError && error.code === "unauthenticated") onSignedOut();
      else {
        setSignOutError(error);
        setSigningOut(false);
      }
    }
  }, [session.csrfToken, onSignedOut]);

  return (
    <>
      <Header
        email={session.email}
        pathname={pathname}
        onSignOut={() => void signOut()}
        signingOut={signingOut}
      />
      <main id="main" className="main" ref={main} tabIndex={-1}>
        {signOutError ? <ErrorState error={signOutError} title="Could not sign out" /> : null}
        <Page pathname={pathname} search={search} />
      </main>
    </>
  );
}

export function App() {
  const session = useResource(api.session);
  const [signedOut, setSignedOut] = useState(false);

  // Not signed in: the gateway's sign-in brings the reviewer back to this very page.
  const unauthenticated = session.error instanceof ApiError && session.error.status === 401;
  useEffect(() => {
    if (unauthenticated) window.location.assign(loginUrl(currentPath()));
  }, [unauthenticated]);

  const onSignedOut = useCallback(() => {
    forgetDrafts();
    setSignedOut(true);
  }, []);

  if (signedOut) return <SignedOutPage />;
  if (!session.data) {
    return (
      <main id="main" className="main narrow" tabIndex={-1}>
        <h1>Airlock</h1>
        {session.error && !unauthenticated ? (
          <ErrorState
            error={session.error}
            onRetry={session.reload}
            title="Could not load your session"
          />
        ) : (
          <Loading what="Signing you in…" />
        )}
      </main>
    );
  }
  return (
    <SessionContext.Provider value={session.data}>
      <LiveProvider>
        <Shell session={session.data} onSignedOut={onSignedOut} />
      </LiveProvider>
    </SessionContext.Provider>
  );
}
