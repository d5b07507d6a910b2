/** Pages with nothing to load: signed out, and a path the console does not know. */
import { Link } from "../components/link.js";
import { usePageTitle } from "../hooks.js";

export function SignedOutPage() {
  usePageTitle("Signed out");
  return (
    <main id="main" className="main narrow" tabIndex={-1}>
      <h1>Signed out</h1>
      <p>You are signed out of Airlock.</p>
      <p>
        <a className="button" href="/auth/login">
          Sign in
        </a>
      </p>
    </main>
  );
}

export function NotFoundPage() {
  usePageTitle("Not found");
  return (
    <>
      <h1>Page not found</h1>
      <p>
        The console has no page here. <Link to="/">Go to the inbox</Link>
      </p>
    </>
  );
}
