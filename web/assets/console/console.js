// IO Cloud web console: a small single-page app over the REST API under /v1.
// Plain JavaScript, no framework. Every string from the server reaches the DOM through
// textContent / createElement only, never innerHTML, so no data can inject markup.
'use strict';

(function () {
  const ACCESS_KEY = 'iocloud.access_token'; // GraphiQL (/graphql) reads this one too.
  const REFRESH_KEY = 'iocloud.refresh_token';
  const PENDING_INVITE_KEY = 'iocloud.pending_invite';
  const ROLES = ['owner', 'admin', 'member', 'billing', 'viewer'];
  const VIEWS = ['overview', 'members', 'invitations', 'keys', 'audit'];
  const PAGE_SIZE = 50;

  // What /v1/me said last; null when signed out.
  let me = null;
  // The paged tables, built by wire() once the DOM exists.
  let members, invitations, keys, audit;

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- DOM helpers

  // Builds an element; strings among the children become text nodes (escaped by construction).
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else if (k in node && !k.startsWith('data') && !k.startsWith('aria')) node[k] = v;
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  // A timestamp cell: local time for people, the exact RFC 3339 value on hover.
  function time(value) {
    if (!value) return el('span', { class: 'muted' }, '—');
    const d = new Date(value);
    const text = Number.isNaN(d.getTime()) ? value : d.toLocaleString();
    return el('time', { dateTime: value, title: value }, text);
  }

  function badge(text, kind) {
    return el('span', { class: 'badge badge-' + (kind || text) }, text);
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  // ---------------------------------------------------------------- banners

  function showError(err) {
    let text;
    if (err && err.problem) {
      const p = err.problem;
      text = p.detail || p.title || 'The request failed.';
      if (p.field) text += ' (field: ' + p.field + ')';
    } else if (err instanceof TypeError) {
      // fetch rejects with TypeError when the network is down; its message is not for users.
      text = 'Could not reach the server. Check your connection and try again.';
    } else {
      text = 'Something went wrong. Please try again.';
      console.error(err); // the details belong in the developer console, not the page
    }
    $('error-banner').textContent = text;
    show($('error-region'), true);
    hideNotice();
  }

  function clearError() {
    show($('error-region'), false);
    $('error-banner').textContent = '';
  }

  function notify(text) {
    $('notice').textContent = text;
    show($('notice-region'), true);
  }

  function hideNotice() {
    show($('notice-region'), false);
    $('notice').textContent = '';
  }

  // ---------------------------------------------------------------- tokens

  function storeSession(session) {
    localStorage.setItem(ACCESS_KEY, session.access_token);
    localStorage.setItem(REFRESH_KEY, session.refresh_token);
  }

  function clearSession() {
    localStorage.removeItem(ACCESS_KEY);
    localStorage.removeItem(REFRESH_KEY);
    me = null;
  }

  // Refresh tokens are single use: two concurrent refreshes would burn the token twice and the
  // second would be refused (reuse). So plain refreshes share one in-flight promise.
  let refreshing = null;

  function refreshSession(orgId) {
    if (!orgId && refreshing) return refreshing;
    const refreshToken = localStorage.getItem(REFRESH_KEY);
    if (!refreshToken) return Promise.reject(new Error('no refresh token'));
    const body = { refresh_token: refreshToken };
    if (orgId) body.org_id = orgId;
    const p = api('POST', '/v1/auth/refresh', body, { auth: false }).then((session) => {
      storeSession(session);
      return session;
    });
    if (!orgId) refreshing = p.finally(() => { refreshing = null; });
    return orgId ? p : refreshing;
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(problem) {
      super(problem.detail || problem.title || 'request failed');
      this.problem = problem;
    }
  }

  // Calls the API and returns the parsed JSON (null for 204). Throws ApiError carrying the
  // problem document. With auth, an expired or invalid access token is refreshed once and the
  // request retried; if that fails the session is over and the sign-in view is shown.
  async function api(method, path, body, opts) {
    const auth = !opts || opts.auth !== false;
    const send = async () => {
      const headers = { Accept: 'application/json' };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const token = localStorage.getItem(ACCESS_KEY);
      if (auth && token) headers.Authorization = 'Bearer ' + token;
      const res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
      });
      return { res, token };
    };

    let { res, token } = await send();
    if (auth && res.status === 401) {
      const problem = await readProblem(res);
      if (problem.code !== 'token_expired' && problem.code !== 'invalid_token') throw sessionEnded();
      try {
        // Another tab may already have refreshed: then just use its token.
        if (localStorage.getItem(ACCESS_KEY) === token) await refreshSession();
      } catch (err) {
        // A refused refresh ends the session; a network failure or 5xx does not.
        if (err instanceof ApiError && err.problem.status === 401) throw sessionEnded();
        if (err instanceof ApiError || err instanceof TypeError) throw err;
        throw sessionEnded(); // no refresh token stored
      }
      ({ res } = await send());
      if (res.status === 401) throw sessionEnded();
    }
    if (!res.ok) throw new ApiError(await readProblem(res));
    if (res.status === 204) return null;
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }

  // Reads an RFC 9457 problem document; anything else (a proxy's HTML page) becomes a generic one.
  async function readProblem(res) {
    const type = res.headers.get('Content-Type') || '';
    if (type.includes('json')) {
      try {
        const p = await res.json();
        if (p && typeof p === 'object') return p;
      } catch (e) { /* fall through to the generic problem */ }
    }
    return { status: res.status, title: res.statusText, detail: 'The request failed (HTTP ' + res.status + ').' };
  }

  // Drops the session, shows the sign-in view and returns the error for the caller to throw.
  function sessionEnded() {
    clearSession();
    renderSignedOut();
    return new ApiError({ status: 401, code: 'session_ended', detail: 'Your session has ended. Please sign in again.' });
  }

  function listPath(path, cursor) {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (cursor) q.set('cursor', cursor);
    return path + '?' + q.toString();
  }

  // Disables a form's buttons while its request runs, so a double click cannot send it twice.
  async function busy(form, fn) {
    const buttons = form.querySelectorAll('button');
    buttons.forEach((b) => { b.disabled = true; });
    form.setAttribute('aria-busy', 'true');
    try {
      clearError();
      return await fn();
    } catch (err) {
      showError(err);
      return undefined;
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
      form.removeAttribute('aria-busy');
    }
  }

  const isManager = () => !!me && (me.role === 'owner' || me.role === 'admin');

  // ---------------------------------------------------------------- invitation links

  // /console/accept?token=X (the link in invitation emails) or #/accept?token=X: keep the token
  // for this tab and take it out of the address bar, so it does not linger in history.
  function capturePendingInvite() {
    let token = null;
    if (/\/console\/accept\/?$/.test(location.pathname)) {
      token = new URLSearchParams(location.search).get('token');
    }
    const { name, params } = parseHash();
    if (name === 'accept' && params.get('token')) token = params.get('token');
    if (token) {
      sessionStorage.setItem(PENDING_INVITE_KEY, token);
      history.replaceState(null, '', '/console/#/accept');
    }
  }

  const pendingInvite = () => sessionStorage.getItem(PENDING_INVITE_KEY);

  // ---------------------------------------------------------------- routing

  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, '');
    const [name, query] = raw.split('?');
    return { name: name || 'overview', params: new URLSearchParams(query || '') };
  }

  function route() {
    if (!me) return renderSignedOut();
    clearError();
    let { name } = parseHash();
    const accepting = name === 'accept';
    if (accepting) name = 'invitations';
    if (!VIEWS.includes(name)) name = 'overview';
    // The one-time secret must not survive leaving the keys view.
    if (name !== 'keys') hideSecret();

    for (const section of document.querySelectorAll('.view')) {
      show(section, section.dataset.view === name);
    }
    for (const link of document.querySelectorAll('a[data-nav]')) {
      if (link.dataset.nav === name) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    const view = $('view-' + name);
    const manager = isManager();
    view.querySelectorAll('.manager-only').forEach((n) => show(n, manager));
    view.querySelectorAll('.forbidden').forEach((n) => show(n, !manager));

    const renderers = { overview: renderOverview, members: renderMembers, invitations: renderInvitations, keys: renderKeys, audit: renderAudit };
    renderers[name]();
    if (accepting || name === 'invitations') renderAcceptCard();
  }

  // ---------------------------------------------------------------- signed out

  function renderSignedOut() {
    show($('topbar'), false);
    show($('app-view'), false);
    show($('auth-view'), true);
    show($('invite-pending'), !!pendingInvite());
  }

  function selectTab(which) {
    for (const name of ['signin', 'signup']) {
      const tab = $('tab-' + name);
      const selected = name === which;
      tab.setAttribute('aria-selected', String(selected));
      tab.tabIndex = selected ? 0 : -1;
      show($(name + '-panel'), selected);
    }
  }

  async function onSignedIn(session) {
    storeSession(session);
    $('signin-form').reset();
    $('signup-form').reset();
    // Land on the acceptance prompt when an invitation link brought the user here.
    if (pendingInvite()) history.replaceState(null, '', '/console/#/accept');
    await loadMe();
  }

  // ---------------------------------------------------------------- signed in shell

  async function loadMe() {
    me = await api('GET', '/v1/me');
    if (!me) return;
    renderShell();
    route();
  }

  function renderShell() {
    show($('auth-view'), false);
    show($('topbar'), true);
    show($('app-view'), true);
    $('user-email').textContent = me.user.email;
    const switcher = $('org-switcher');
    switcher.replaceChildren(...(me.memberships || []).map((m) =>
      el('option', { value: m.organization.id, selected: m.organization.id === me.organization.id },
        m.organization.name + ' (' + m.role + ')')));
    switcher.value = me.organization.id;
  }

  // Switching organisation trades the refresh token for one scoped to the chosen organisation.
  async function switchOrg(orgId, message) {
    clearError();
    hideSecret(); // a key secret belongs to the organisation being left
    try {
      await refreshSession(orgId);
      await loadMe();
      if (message) notify(message);
    } catch (err) {
      // A refused refresh token means the session is gone (e.g. signed out elsewhere).
      if (err instanceof ApiError && err.problem.status === 401) sessionEnded();
      showError(err);
      if (me) $('org-switcher').value = me.organization.id; // put the select back
    }
  }

  async function signOut() {
    try {
      await api('POST', '/v1/auth/logout');
    } catch (e) {
      // Best effort: the local session is dropped whatever the server says.
    }
    clearSession();
    hideNotice();
    clearError();
    history.replaceState(null, '', '/console/');
    renderSignedOut();
  }

  // ---------------------------------------------------------------- paged tables

  // One paged list per table: remembers its cursor, appends pages, and ignores answers that
  // arrive after the view was reloaded (a generation counter).
  function pagedTable({ path, table, more, columns, row, empty }) {
    const tbody = $(table).tBodies[0];
    const moreButton = $(more);
    const state = { cursor: null, gen: 0, count: 0 };

    async function load(reset) {
      if (reset) {
        state.gen += 1;
        state.cursor = null;
        state.count = 0;
        tbody.replaceChildren();
        show(moreButton, false);
      }
      const gen = state.gen;
      moreButton.disabled = true;
      try {
        const page = await api('GET', listPath(path, state.cursor));
        if (gen !== state.gen) return;
        for (const item of page.items) tbody.append(row(item));
        state.count += page.items.length;
        if (state.count === 0) {
          tbody.append(el('tr', { class: 'empty' }, el('td', { colSpan: columns }, empty)));
        }
        state.cursor = page.next_cursor || null;
        show(moreButton, !!state.cursor);
      } catch (err) {
        if (gen === state.gen) showError(err);
      } finally {
        moreButton.disabled = false;
      }
    }

    moreButton.addEventListener('click', () => load(false));
    return { reload: () => load(true) };
  }

  // ---------------------------------------------------------------- overview

  function renderOverview() {
    $('org-name-text').textContent = me.organization.name;
    $('my-org-id').textContent = me.organization.id;
    $('my-role').textContent = me.role;
    $('my-user-id').textContent = me.user.id;
    show($('org-form'), isManager());
    $('org-name').value = me.organization.name;
  }

  async function onRenameOrg(e) {
    e.preventDefault();
    const form = e.currentTarget;
    await busy(form, async () => {
      const org = await api('PATCH', '/v1/org', { name: $('org-name').value.trim() });
      me.organization = org;
      await loadMe(); // the switcher shows the new name too
      notify('Organisation renamed to “' + org.name + '”.');
    });
  }

  async function onCreateOrg(e) {
    e.preventDefault();
    const form = e.currentTarget;
    await busy(form, async () => {
      const org = await api('POST', '/v1/orgs', { name: $('neworg-name').value.trim() });
      form.reset();
      await switchOrg(org.id, 'Created “' + org.name + '”; you are now working in it.');
    });
  }

  // ---------------------------------------------------------------- members

  function memberRow(m) {
    const self = m.user_id === me.user.id;
    let roleCell = badge(m.role, 'role');
    const actions = el('td', { class: 'actions' });
    if (isManager()) {
      const select = el('select', { 'aria-label': 'Role of ' + m.email, 'data-testid': 'member-role-' + m.user_id },
        ROLES.map((r) => el('option', { value: r, selected: r === m.role }, r)));
      select.value = m.role;
      select.addEventListener('change', () => changeRole(m, select));
      roleCell = select;
    }
    if (isManager() || self) {
      actions.append(el('button', {
        type: 'button', class: 'btn btn-danger btn-small', 'data-testid': 'member-remove-' + m.user_id,
        onclick: () => removeMember(m, self),
      }, self ? 'Leave' : 'Remove'));
    }
    return el('tr', { 'data-id': m.user_id },
      el('td', {}, m.name, self ? el('span', { class: 'muted' }, ' (you)') : null),
      el('td', {}, m.email),
      el('td', {}, roleCell),
      el('td', {}, time(m.joined_at)),
      actions);
  }

  async function changeRole(m, select) {
    clearError();
    select.disabled = true;
    try {
      const updated = await api('PATCH', '/v1/members/' + encodeURIComponent(m.user_id), { role: select.value });
      m.role = updated.role;
      notify(m.email + ' is now ' + updated.role + '.');
      // Demoting yourself changes what the console may show: reload who we are.
      if (m.user_id === me.user.id) await switchOrg(me.organization.id);
    } catch (err) {
      select.value = m.role; // the server said no: show the role that still holds
      showError(err);
    } finally {
      select.disabled = false;
    }
  }

  async function removeMember(m, self) {
    const question = self ? 'Leave “' + me.organization.name + '”?' : 'Remove ' + m.email + ' from this organisation?';
    if (!window.confirm(question)) return;
    clearError();
    try {
      await api('DELETE', '/v1/members/' + encodeURIComponent(m.user_id));
      if (self) {
        // Our session points at an organisation we left: move to another one, or sign out.
        const other = (me.memberships || []).find((x) => x.organization.id !== me.organization.id);
        if (other) await switchOrg(other.organization.id, 'You left the organisation.');
        else await signOut();
        return;
      }
      notify(m.email + ' was removed.');
      members.reload();
    } catch (err) {
      showError(err);
    }
  }

  function renderMembers() {
    members.reload();
  }

  // ---------------------------------------------------------------- invitations

  function invitationRow(inv) {
    const actions = el('td', { class: 'actions' });
    if (inv.status === 'pending') {
      actions.append(el('button', {
        type: 'button', class: 'btn btn-danger btn-small', 'data-testid': 'invitation-revoke-' + inv.id,
        onclick: () => revokeInvitation(inv),
      }, 'Revoke'));
    }
    return el('tr', { 'data-id': inv.id },
      el('td', {}, inv.email),
      el('td', {}, badge(inv.role, 'role')),
      el('td', {}, badge(inv.status)),
      el('td', {}, time(inv.created_at)),
      el('td', {}, time(inv.expires_at)),
      actions);
  }

  async function revokeInvitation(inv) {
    if (!window.confirm('Revoke the invitation for ' + inv.email + '?')) return;
    clearError();
    try {
      await api('DELETE', '/v1/invitations/' + encodeURIComponent(inv.id));
      notify('The invitation for ' + inv.email + ' was revoked.');
      invitations.reload();
    } catch (err) {
      showError(err);
    }
  }

  function renderInvitations() {
    if (isManager()) invitations.reload();
  }

  function renderAcceptCard() {
    const token = pendingInvite();
    const card = $('accept-card');
    card.classList.toggle('highlight', !!token);
    if (token) {
      $('accept-token').value = token;
      $('accept-hint').textContent = 'You opened an invitation link. Press Accept to join the organisation.';
      $('accept-submit').focus();
    } else {
      $('accept-hint').textContent = 'Paste the token from your invitation email.';
    }
  }

  async function onInvite(e) {
    e.preventDefault();
    const form = e.currentTarget;
    await busy(form, async () => {
      const inv = await api('POST', '/v1/invitations', { email: $('invite-email').value.trim(), role: $('invite-role').value });
      form.reset();
      $('invite-role').value = 'member';
      notify('Invitation sent to ' + inv.email + '.');
      invitations.reload();
    });
  }

  async function onAccept(e) {
    e.preventDefault();
    const form = e.currentTarget;
    await busy(form, async () => {
      const membership = await api('POST', '/v1/invitations/accept', { token: $('accept-token').value.trim() });
      sessionStorage.removeItem(PENDING_INVITE_KEY);
      form.reset();
      history.replaceState(null, '', '/console/#/overview');
      await switchOrg(membership.organization.id,
        'You joined “' + membership.organization.name + '” as ' + membership.role + '; you are now working in it.');
    });
  }

  // ---------------------------------------------------------------- API keys

  function keyRow(k) {
    const actions = el('td', { class: 'actions' });
    if (k.status === 'active') {
      actions.append(el('button', {
        type: 'button', class: 'btn btn-danger btn-small', 'data-testid': 'key-revoke-' + k.id,
        onclick: () => revokeKey(k),
      }, 'Revoke'));
    }
    return el('tr', { 'data-id': k.id },
      el('td', {}, k.name),
      el('td', {}, el('code', {}, k.prefix)),
      el('td', {}, (k.scopes || []).map((s) => badge(s, 'scope'))),
      el('td', {}, badge(k.status)),
      el('td', {}, time(k.created_at)),
      el('td', {}, time(k.expires_at)),
      el('td', {}, time(k.last_used_at)),
      actions);
  }

  async function revokeKey(k) {
    if (!window.confirm('Revoke the API key “' + k.name + '”? Programs using it will stop working.')) return;
    clearError();
    try {
      await api('DELETE', '/v1/api-keys/' + encodeURIComponent(k.id));
      notify('The key “' + k.name + '” was revoked.');
      keys.reload();
    } catch (err) {
      showError(err);
    }
  }

  function renderKeys() {
    if (isManager()) keys.reload();
  }

  async function onCreateKey(e) {
    e.preventDefault();
    const form = e.currentTarget;
    const scopes = [...form.querySelectorAll('input[name=scope]:checked')].map((c) => c.value);
    if (scopes.length === 0) {
      showError({ problem: { detail: 'Choose at least one scope.', field: 'scopes' } });
      return;
    }
    const body = { name: $('key-name').value.trim(), scopes };
    const days = $('key-expiry').value.trim();
    if (days) body.expires_in_days = Number(days); // absent means the key does not expire
    await busy(form, async () => {
      const created = await api('POST', '/v1/api-keys', body);
      form.reset();
      showSecret(created.secret);
      keys.reload();
    });
  }

  // The secret exists only in this box: it is never stored and is wiped when the box closes.
  function showSecret(secret) {
    $('key-secret').textContent = secret;
    $('key-secret-copy').textContent = 'Copy';
    show($('key-secret-box'), true);
    $('key-secret-copy').focus();
  }

  function hideSecret() {
    $('key-secret').textContent = '';
    show($('key-secret-box'), false);
  }

  async function copySecret() {
    const node = $('key-secret');
    try {
      await navigator.clipboard.writeText(node.textContent);
      $('key-secret-copy').textContent = 'Copied';
    } catch (e) {
      // No clipboard access (plain http, permissions): select the text so Ctrl+C works.
      const range = document.createRange();
      range.selectNodeContents(node);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      $('key-secret-copy').textContent = 'Press Ctrl+C';
    }
  }

  // ---------------------------------------------------------------- audit log

  function auditRow(ev) {
    const outcomeKind = { success: 'ok', denied: 'warn', failure: 'bad' }[ev.outcome] || 'neutral';
    return el('tr', { 'data-id': ev.id },
      el('td', {}, time(ev.created_at)),
      el('td', {}, ev.actor_type, ev.actor_id ? el('div', {}, el('code', { class: 'small' }, ev.actor_id)) : null),
      el('td', {}, el('code', {}, ev.action)),
      el('td', {}, ev.target ? el('code', { class: 'small' }, ev.target) : el('span', { class: 'muted' }, '—')),
      el('td', {}, String(ev.status)),
      el('td', {}, badge(ev.outcome, outcomeKind)),
      el('td', {}, ev.ip || '—'),
      el('td', {}, ev.request_id ? el('code', { class: 'small' }, ev.request_id) : '—'));
  }

  function renderAudit() {
    if (isManager()) audit.reload();
  }

  // ---------------------------------------------------------------- wiring

  function wire() {
    members = pagedTable({ path: '/v1/members', table: 'members-table', more: 'members-more', columns: 5, empty: 'No members.', row: memberRow });
    invitations = pagedTable({ path: '/v1/invitations', table: 'invitations-table', more: 'invitations-more', columns: 6, empty: 'No invitations yet.', row: invitationRow });
    keys = pagedTable({ path: '/v1/api-keys', table: 'keys-table', more: 'keys-more', columns: 8, empty: 'No API keys yet.', row: keyRow });
    audit = pagedTable({ path: '/v1/audit-events', table: 'audit-table', more: 'audit-more', columns: 8, empty: 'No events yet.', row: auditRow });

    $('tab-signin').addEventListener('click', () => selectTab('signin'));
    $('tab-signup').addEventListener('click', () => selectTab('signup'));
    // Arrow keys move between tabs, as the ARIA tabs pattern expects.
    document.querySelector('[role=tablist]').addEventListener('keydown', (e) => {
      if (e.key !== 'ArrowLeft' && e.key !== 'ArrowRight') return;
      const next = $('tab-signin').getAttribute('aria-selected') === 'true' ? 'signup' : 'signin';
      selectTab(next);
      $('tab-' + next).focus();
    });

    $('signin-form').addEventListener('submit', (e) => {
      e.preventDefault();
      busy(e.currentTarget, async () => {
        const session = await api('POST', '/v1/auth/login',
          { email: $('signin-email').value.trim(), password: $('signin-password').value }, { auth: false });
        await onSignedIn(session);
      });
    });
    $('signup-form').addEventListener('submit', (e) => {
      e.preventDefault();
      busy(e.currentTarget, async () => {
        const session = await api('POST', '/v1/auth/signup', {
          email: $('signup-email').value.trim(),
          password: $('signup-password').value,
          name: $('signup-name').value.trim(),
          org_name: $('signup-org').value.trim(),
        }, { auth: false });
        await onSignedIn(session);
      });
    });

    $('signout').addEventListener('click', signOut);
    $('org-switcher').addEventListener('change', (e) => {
      const target = me && (me.memberships || []).find((m) => m.organization.id === e.target.value);
      switchOrg(e.target.value, target ? 'Now working in “' + target.organization.name + '”.' : null);
    });

    $('org-form').addEventListener('submit', onRenameOrg);
    $('neworg-form').addEventListener('submit', onCreateOrg);
    $('invite-form').addEventListener('submit', onInvite);
    $('accept-form').addEventListener('submit', onAccept);
    $('key-form').addEventListener('submit', onCreateKey);
    $('key-secret-copy').addEventListener('click', copySecret);
    $('key-secret-dismiss').addEventListener('click', hideSecret);
    $('error-dismiss').addEventListener('click', clearError);
    $('notice-dismiss').addEventListener('click', hideNotice);

    $('invite-role').replaceChildren(...ROLES.map((r) => el('option', { value: r, selected: r === 'member' }, r)));

    window.addEventListener('hashchange', () => {
      capturePendingInvite();
      hideNotice();
      route();
    });
  }

  async function start() {
    wire();
    capturePendingInvite();
    if (!localStorage.getItem(ACCESS_KEY) && !localStorage.getItem(REFRESH_KEY)) {
      renderSignedOut();
      return;
    }
    try {
      // Only a refresh token left (the access token was cleared): trade it before asking /me.
      if (!localStorage.getItem(ACCESS_KEY)) await refreshSession();
      await loadMe();
    } catch (err) {
      // A refused refresh token is spent: forget it rather than retrying it on every load.
      if (err instanceof ApiError && err.problem.status === 401) clearSession();
      if (!me) renderSignedOut();
      showError(err);
    }
  }

  document.addEventListener('DOMContentLoaded', start);
})();
