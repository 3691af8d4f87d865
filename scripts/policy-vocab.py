#!/usr/bin/env python3
"""Rebuild the channel-policy vocabularies in crates/salve-core/data/policy/vocab/.

The vocabularies only explain why a text goes secure (the allow-list decides), so they favour
terms that are useful as whole-word matches and drop everyday words that would cause false
secures ("cold", "back", "fall").

Inputs (all from PyPI; see vocab/SOURCES.md for licences):

    pip download --no-deps -d /tmp/vocab simple-icd-10-cm==1.5.0 drug-named-entity-recognition==2.0.9
    pip install wordfreq==3.1.1        # word frequencies, used only to drop common words
    python3 scripts/policy-vocab.py /tmp/vocab

Output is deterministic (sorted, one lowercase term a line).
"""

import bz2
import glob
import os
import pickle
import re
import sys
import unicodedata
import xml.etree.ElementTree as ET
import zipfile

from wordfreq import top_n_list, zipf_frequency

EVERYDAY_N = 12000

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates/salve-core/data/policy/vocab")
ALLOW = os.path.join(ROOT, "crates/salve-core/data/policy/allow")


def fold(s):
    """Lowercase, strip accents, keep letters, digits and single spaces (as the Rust side does)."""
    s = unicodedata.normalize("NFD", s.lower())
    s = "".join(c for c in s if not unicodedata.combining(c))
    s = re.sub(r"[^a-z0-9ñ]+", " ", s.replace("ñ", "n"))
    return " ".join(s.split())


_ZIPF = {}


def _zipf_folded():
    """Highest frequency of each folded word ("atras" for "atrás") in English or Spanish."""
    if not _ZIPF:
        for lang in ("en", "es"):
            for w in top_n_list(lang, 60000):
                f = fold(w)
                z = zipf_frequency(w, lang)
                if z > _ZIPF.get(f, 0):
                    _ZIPF[f] = z
    return _ZIPF


def common(word, limit=4.0):
    """An everyday word in English or Spanish: matching it alone would cause false secures."""
    return _zipf_folded().get(word, 0) >= limit


def safe_words():
    """Words the curated allow files accept; a vocabulary must never contain them alone."""
    words = set()
    for path in glob.glob(os.path.join(ALLOW, "*.txt")):
        if path.endswith("everyday.txt"):
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line and " " not in line:
                    words.add(fold(line))
    return words


# Boilerplate of ICD-10-CM titles: not conditions.
ICD_STOP = set(
    """
    unspecified specified other without with due initial subsequent sequela encounter
    bilateral unilateral classified elsewhere except including involving region regions
    multiple single site sites part parts type types following current history personal
    family status complicating complicated uncomplicated episode mild moderate severe
    acute chronic primary secondary unknown behavior behaviour uncertain certain
    localized generalized recurrent persistent delayed routine abnormal abnormality
    disorder disorders disease diseases condition conditions syndrome
    right left upper lower anterior posterior superior inferior lateral medial
    displaced nondisplaced closed open manifestation manifestations ascertained
    undetermined intent accidental assault self harm harmful contact exposure
    newborn maternal fetus placental
    """.split()
)


def icd_conditions(wheel_dir):
    whl = glob.glob(os.path.join(wheel_dir, "simple_icd_10_cm-*.whl"))[0]
    with zipfile.ZipFile(whl) as z:
        name = next(n for n in z.namelist() if n.endswith(".xml") and "tabular" in n)
        root = ET.fromstring(z.read(name))
    words, phrases = set(), set()
    for diag in root.iter("diag"):
        code = diag.findtext("name") or ""
        desc = diag.findtext("desc") or ""
        # Chapters S-Y are injuries and external causes: their words are everyday ones.
        if code[:1] in "STVWXY":
            continue
        plain = re.sub(r"\([^)]*\)", " ", desc)
        for part in re.split(r",| and | or | of | in | with | due to | without ", plain):
            f = fold(part)
            n = len(f.split())
            # Short category titles are whole condition names ("type 2 diabetes mellitus").
            if len(code) <= 4 and 2 <= n <= 3 and not any(w in ICD_STOP for w in f.split()):
                if not all(common(w, 4.5) for w in f.split()):
                    phrases.add(f)
        for w in fold(plain).split():
            if len(w) >= 5 and w.isalpha() and w not in ICD_STOP and not common(w, 3.6):
                words.add(w)
    return words | phrases


def icd_all_words(wheel_dir):
    whl = glob.glob(os.path.join(wheel_dir, "simple_icd_10_cm-*.whl"))[0]
    with zipfile.ZipFile(whl) as z:
        name = next(n for n in z.namelist() if n.endswith(".xml") and "tabular" in n)
        root = ET.fromstring(z.read(name))
    words = set()
    for diag in root.iter("diag"):
        words.update(fold(diag.findtext("desc") or "").split())
    return words


def drugs(wheel_dir):
    whl = glob.glob(os.path.join(wheel_dir, "drug_named_entity_recognition-*.whl"))[0]
    with zipfile.ZipFile(whl) as z:
        name = next(n for n in z.namelist() if n.endswith("drug_ner_dictionary.pkl.bz2"))
        data = pickle.loads(bz2.decompress(z.read(name)))
    canon = data["drug_canonical_to_data"]
    # Consumer drugs only (those with a MedlinePlus, NHS or Wikipedia page): the full
    # dictionary is mostly proteins and receptors that staff never write.
    consumer = {
        k for k, v in canon.items() if {"medline_plus_id", "nhs_url", "wikipedia_url"} & v.keys()
    }
    out = set()
    for variant, canonicals in data["drug_variant_to_canonical"].items():
        if not any(c in consumer for c in canonicals):
            continue
        if not re.fullmatch(r"[a-z][a-z \-]+", variant):
            continue
        f = fold(variant)
        words = f.split()
        if len(words) > 3 or len(f) < 4:
            continue
        if len(words) == 1 and common(f, 3.8):
            continue
        out.add(f)
    return out


# Hand-curated terms (English and Spanish, unaccented), by Salve contributors. Everyday words
# that clinicians use in messages, which the public lists above lack or that their frequency
# filter drops.
CURATED = {
    "medications": """
        medication medications medicines meds prescription prescriptions rx refill refills
        pharmacy dose dosage doses pill pills tablet tablets capsule capsules inhaler inhalers
        insulin antibiotic antibiotics antidepressant antidepressants steroid steroids
        vaccine vaccines vaccination booster injection injections infusion
        contraceptive contraceptives ointment opioid opioids painkiller painkillers sedative
        chemo chemotherapy
        medicamento medicamentos medicinas receta recetas farmacia dosis pastilla pastillas
        tableta tabletas capsula capsulas inhalador insulina antibiotico antibioticos
        antidepresivo antidepresivos vacuna vacunas inyeccion inyecciones anticonceptivo
        anticonceptivos pomada quimioterapia quimio resurtido
        metformin lisinopril atorvastatin amoxicillin ibuprofen tylenol advil ozempic wegovy
        suboxone methadone naloxone narcan truvada adderall xanax zoloft prozac lexapro
        """,
    "tests": """
        pap lab labs laboratory result results screening screenings bloodwork urinalysis
        a1c hba1c cbc cmp bmp cholesterol glucose psa tsh hemoglobin
        mri xray ultrasound sonogram echocardiogram ekg ecg eeg mammogram mammography biopsy
        pathology culture swab imaging findings diagnosis diagnoses dexa holter spirometry
        analisis laboratorio resultado resultados prueba pruebas examenes
        orina radiografia resonancia tomografia ultrasonido ecografia
        electrocardiograma mamografia papanicolau biopsia cultivo diagnostico hallazgos
        colesterol glucosa hemoglobina
        """,
    "conditions": """
        diabetes diabetic prediabetes cancer tumor tumour depression depressed anxiety
        pregnant pregnancy miscarriage abortion hiv aids hepatitis herpes chlamydia gonorrhea
        syphilis hpv std sti stds stis infection infections infected
        asthma copd hypertension stroke seizure seizures epilepsy dementia alzheimer alzheimers
        autism adhd bipolar schizophrenia psychosis ptsd suicidal suicide overdose addiction
        alcoholism anorexia bulimia obesity overweight arthritis lupus cirrhosis
        covid flu influenza pneumonia bronchitis uti rash lump cyst
        fracture concussion injury wound sprain pain migraine headache
        fever cough nausea vomiting diarrhea bleeding symptoms symptom allergy allergies
        allergic infertility fertility menopause incontinence thyroid anemia insomnia illness
        disease disorder
        embarazada embarazo aborto vih sida infeccion infecciones infectado asma
        hipertension convulsiones epilepsia demencia autismo esquizofrenia depresion ansiedad
        suicidio sobredosis adiccion alcoholismo obesidad sobrepeso artritis cirrosis gripe
        neumonia bronquitis alergia alergias infertilidad fertilidad menopausia incontinencia
        tiroides anemia dolor fiebre tos nauseas vomito vomitos diarrea sangrado sintomas sintoma
        fractura lesion herida migrana bulto quiste enfermedad enfermo enferma
        """,
    "procedures": """
        surgery surgical procedures colonoscopy endoscopy vasectomy hysterectomy mastectomy
        appendectomy tonsillectomy cesarean dialysis chemotherapy transplant stitches sutures
        iud implant anesthesia sedation catheter ablation stent counseling therapy
        psychotherapy rehab rehabilitation detox
        cirugia operacion procedimiento colonoscopia endoscopia vasectomia histerectomia
        mastectomia cesarea dialisis radioterapia trasplante anestesia sedacion
        terapia consejeria rehabilitacion desintoxicacion
        """,
    "specialties": """
        oncology oncologist hematology hematologist cardiology cardiologist neurology neurologist
        psychiatry psychiatrist psychology psychologist dermatology dermatologist urology
        urologist gynecology gynecologist obgyn obstetrics obstetrician ivf endocrinology
        endocrinologist gastroenterology gastroenterologist pulmonology pulmonologist
        nephrology nephrologist rheumatology rheumatologist hospice orthopedics orthopedic
        bariatric podiatry ophthalmology otolaryngology radiology
        oncologia oncologo oncologa cardiologia cardiologo cardiologa neurologia neurologo
        psiquiatria psiquiatra psicologia psicologo psicologa dermatologia dermatologo
        urologia urologo ginecologia ginecologo ginecologa obstetricia endocrinologia
        endocrinologo gastroenterologia neumologia nefrologia reumatologia infectologia
        ortopedia traumatologia
        """,
    "preparation": """
        fasting laxative driver ayunas ayuno laxante prep gown waist bata cintura lotion
        lotions deodorant desodorante caffeine cafeina jewelry joyas
        """,
    "devices": """
        cpap bipap nebulizer glucometer epipen crutches walker wheelchair catheter ostomy
        colostomy insulin pump cgm dexcom libre freestyle hearing aid hearing aids
        oxygen tank pacemaker defibrillator brace splint sling
        muletas andadera silla de ruedas nebulizador glucometro oxigeno marcapasos
        """,
    "paperwork": """
        fmla disability
        incapacidad discapacidad justificante
        """,
    "anatomy": """
        breast breasts prostate cervix uterus ovary ovaries vagina vaginal penis testicle
        testicles rectal rectum bladder kidney kidneys liver lung lungs
        thyroid pelvic pelvis genital genitals
        seno senos prostata utero ovario ovarios pene testiculo testiculos
        recto vejiga rinon rinones higado pulmon pulmones
        """,
}

# Curated entries are space-separated single words, plus these multi-word phrases per file.
PHRASES = {
    "medications": ["birth control", "pain medication", "pain meds", "blood thinner", "water pill"],
    "tests": [
        "blood work", "blood test", "blood draw", "urine sample", "stool sample", "lipid panel",
        "ct scan", "cat scan", "x ray", "x rays", "pap smear", "pap test", "covid test",
        "pregnancy test", "strep test", "std test", "hiv test", "sti test", "bone density",
        "stress test", "sleep study", "allergy test", "rayos x", "prueba de embarazo",
        "examen de sangre", "analisis de sangre", "muestra de orina",
    ],
    "conditions": [
        "blood pressure", "high blood pressure", "heart attack", "substance use", "eating disorder",
        "weight loss", "kidney disease", "liver disease", "heart failure", "yeast infection",
        "broken bone", "erectile dysfunction", "sickle cell", "high cholesterol", "sleep apnea",
        "perdida del embarazo", "presion alta", "ataque al corazon", "derrame cerebral",
        "enfermedad renal", "insuficiencia cardiaca", "azucar alta", "presion arterial",
    ],
    "procedures": [
        "c section", "cataract surgery", "knee replacement", "hip replacement", "physical therapy",
        "radiation therapy", "iud insertion", "iud removal", "therapy session",
        "terapia fisica",
    ],
    "specialties": [
        "cancer center", "cancer institute", "heart center", "heart institute", "behavioral health",
        "mental health", "counseling center", "ob gyn", "womens health", "women s health",
        "fertility clinic", "fertility center", "reproductive medicine", "diabetes center",
        "infectious disease", "hiv clinic", "std clinic", "sexual health", "family planning",
        "planned parenthood", "addiction medicine", "addiction treatment", "recovery center",
        "methadone clinic", "substance abuse", "rehab center", "palliative care",
        "dialysis center", "wound care", "sports medicine", "pain management", "pain clinic",
        "weight loss clinic", "sleep clinic", "sleep center", "allergy clinic", "imaging center",
        "transgender clinic", "gender clinic", "memory clinic", "salud mental",
        "salud conductual", "salud de la mujer", "clinica de fertilidad", "planificacion familiar",
        "salud sexual", "centro de adicciones", "cuidados paliativos", "clinica del dolor",
        "centro oncologico", "centro de cancer",
    ],
    "preparation": [
        "nothing to eat", "nothing by mouth", "empty stomach", "do not eat", "dont eat",
        "do not drink", "dont drink", "stop eating", "clear liquids", "bowel prep", "prep kit",
        "full bladder", "drive you home", "ride home", "someone to drive", "adult to drive",
        "arrange a ride", "bring your inhaler", "bring your meds", "bring your medications",
        "bring your glucose meter", "bring your pill bottles", "wear loose clothing", "sample cup",
        "no coma", "no comer", "no beba", "no tomar nada", "liquidos claros", "vejiga llena",
        "quien lo lleve", "quien la lleve", "alguien que lo lleve", "alguien que la lleve",
        "traiga su inhalador", "traiga sus medicamentos", "en ayunas", "take you home",
        "get you home", "pick you up after", "lleve a casa", "llevarlo a casa", "llevarla a casa",
        "no podra manejar", "no podra conducir", "not drive", "cannot drive", "can t drive",
        "shouldn t drive", "able to drive", "nothing after midnight", "after midnight",
        "despues de la medianoche", "change into a gown", "nail polish", "esmalte de unas",
        "empty your bladder", "drink water before", "avoid caffeine", "no caffeine",
        "ropa interior", "two piece outfit",
    ],
    "anatomy": ["cuello uterino"],
    "devices": [
        "insulin pump", "hearing aid", "hearing aids", "oxygen tank", "glucose meter",
        "blood pressure cuff", "silla de ruedas", "cpap mask",
    ],
    "paperwork": [
        "work note", "school note", "doctors note", "doctor s note", "sick note", "excuse note",
        "return to work", "back to work note", "medical leave", "leave of absence",
        "disability form", "disability paperwork", "nota medica", "nota para el trabajo",
        "nota para la escuela", "carta medica", "permiso medico", "incapacidad laboral",
    ],
}

# Single words that look clinical in a list but are everyday words in messages.
DROP = set(
    """
    fast cast patch drops cream echo report reports mass shot shots scan positive negative
    condition test tests testing tested sick study estudio estudios muestra examen procedure
    operation session puntos colon heart skin mole hip knee spine lunar columna
    walker brace sling libre freestyle oxygen tank pump aid aids hearing
    """.split()
)


# Everyday words that still carry clinical meaning in a message to a patient: never allowed by
# frequency alone (a curated allow file may still list one, e.g. "visit").
DENY_EVERYDAY = set(
    """
    normal abnormal fine okay ok well better worse worst improve improving improved feel feeling
    feels felt hurt hurts hurting ache sick ill healthy health healing heal recover recovery
    results result came look looks looked looking clear clean positive negative high low level
    levels count numbers range elevated stable serious urgent emergency concern concerned
    concerning worried worry  sorry body mind mental physical sexual sex baby babies born
    birth pregnant mother       wife husband partner boyfriend
    girlfriend age old weight fat thin eat eating ate food meal meals drink drinking drank
    alcohol drug drugs smoke smoking water sugar salt diet exercise sleep sleeping tired
    breathing breath breathe weak dizzy blood heart brain eye eyes ear ears nose mouth teeth
    tooth throat neck chest arm arms leg legs foot feet hand hands head back stomach belly skin
    hair bone bones muscle muscles joint joints nerve   dead death die died dying
    kill killed life  alive risk danger dangerous safe safety protect protection treat
    treated treatment treatments therapy  cure medical clinical hospital er surgery
    nurse doctor doctors specialist specialists referral refer referred insurance coverage
    approved approval denied deny authorization prior pharmacy test tests tested exam
    screening screen scan scans shot shots dose doses pill pills patch cream drops procedure
    procedures operation session sessions support group program counseling class classes
    education weight loss condition problem problems issue issues trouble help needed
    normal daily twice nightly morning taking take  stop stopped start started continue
      increase decrease reduce lower raise double half
    bien mal mejor peor mejorar mejorando sentir siente siento sintio sentirse duele dolor
    enfermo enferma sano sana salud curar cura recuperacion resultado resultados salio salieron
    normal anormal alto alta bajo baja nivel niveles cuerpo mente bebe bebes nacimiento madre
    hijo hija hijos esposo esposa pareja edad peso comer comida beber bebida alcohol droga
    drogas fumar agua azucar sal dieta ejercicio dormir sueno cansado cansada respirar
    sangre corazon cerebro ojo ojos oido nariz boca dientes garganta cuello pecho brazo
    pierna pie pies mano manos cabeza espalda estomago barriga piel pelo hueso huesos
    musculo muerte morir muerto vida vivir riesgo peligro seguro tratamiento tratar terapia
    cuidado cuidados medico medica hospital emergencia urgencia urgente enfermera doctor
    especialista referido referencia aprobado aprobada negado autorizacion farmacia examen
    prueba estudio estudios toma tomar tome tomando dejar empezar  aumentar bajar
    problema problemas grupo programa clase clases embarazo ataque informe debil caliente
    mareado mareada mareo vomitar hinchado hinchada hinchazon inflamacion golpe caida accidente
    presion azucar gordo gorda delgado delgada triste deprimido deprimida nervioso nerviosa
    estres angustia miedo llorar herido herida quemadura corte sangrar respiracion pecho
    abuse accident advanced attack attacks cancer disease pain suicide injury medicine memory
    pressure temperature vision hearing growth emotional behavior behaviour thoughts fall falls
    falling cut failure damage fear taste speech touch reaction trial studies study testing
    signs episode lack gain regimen domestic self history cycle stage violence mass effects
    effect cause caused causes complex critical serious crisis poor heat sweet milk
    walker brace sling oxygen libre freestyle pump
    period periods cast counselor counselors therapist lonely admitted discharged discharge
    specimen sore sperm gay lesbian bisexual transgender trans queer drunk weed marijuana pot
    cannabis sober sobriety relapse exams rehab bedrest pads tampons diapers breastfeeding
    nursing lactation dental dentist teeth vision glasses contacts shape physical checkups
    muestra regla periodo sexo urgencias internado alta consejero terapeuta sobrio recaida
    killer stress anxious nervous sad swelling swollen bruise burn hot cold weak shaking
    """.split()
)


def everyday(safe, denied):
    """Common English and Spanish words that are not health words: the allow-list's bulk."""
    words = set()
    for lang in ("en", "es"):
        for w in top_n_list(lang, EVERYDAY_N):
            f = fold(w)
            if f and " " not in f and f.isalpha() and len(f) > 1:
                words.add(f)
    return {w for w in words if w not in denied and w not in safe}


def write(name, terms, safe):
    terms = {t for t in terms if t and (" " in t or t not in safe)}
    path = os.path.join(OUT, name + ".txt")
    with open(path, "w", encoding="utf-8") as f:
        for t in sorted(terms):
            f.write(t + "\n")
    print(f"{name}: {len(terms)} terms")


def main():
    wheel_dir = sys.argv[1] if len(sys.argv) > 1 else "/tmp/vocab"
    os.makedirs(OUT, exist_ok=True)
    safe = safe_words()
    curated = {}
    for cat, text in CURATED.items():
        words = {fold(w) for w in text.split()}
        # Single curated words are kept unless they are in DROP; a DROP word still counts
        # inside a phrase ("stress test").
        curated[cat] = {w for w in words if w not in DROP} | {fold(p) for p in PHRASES[cat]}

    meds = curated["medications"] | drugs(wheel_dir)
    conds = curated["conditions"] | icd_conditions(wheel_dir)
    # A term belongs to one file: the more specific list wins.
    for cat in ["tests", "procedures", "specialties", "preparation", "anatomy", "devices", "paperwork"]:
        conds -= curated[cat]
        meds -= curated[cat]
    conds -= meds
    write("medications", meds, safe)
    write("conditions", conds, safe)
    for cat in ["tests", "procedures", "specialties", "preparation", "anatomy", "devices", "paperwork"]:
        write(cat, curated[cat], safe)

    # Any word of any vocabulary term or ICD-10-CM title is a health word.
    # Single-word terms are health words. Words of longer terms and of ICD-10-CM titles can be
    # everyday ones ("substance use", "nervous system"): only the rarer of them count;
    # DENY_EVERYDAY covers the frequent ones that matter.
    zipf = _zipf_folded()
    denied = set(DENY_EVERYDAY)
    words = set(icd_all_words(wheel_dir))
    for terms in [meds, conds] + [curated[c] for c in curated]:
        for t in terms:
            if " " in t:
                words.update(t.split())
            else:
                denied.add(t)
    denied |= {w for w in words if zipf.get(w, 0) < 4.6}
    with open(os.path.join(ALLOW, "everyday.txt"), "w", encoding="utf-8") as f:
        f.write("# Generated by scripts/policy-vocab.py: common words minus health words. Do not edit.\n")
        for w in sorted(everyday(safe, denied)):
            f.write(w + "\n")


if __name__ == "__main__":
    main()
