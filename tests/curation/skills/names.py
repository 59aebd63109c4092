"""A deterministic list of 50,000 full names, from 250 first names x 200 last names."""

_FIRST = """
Aaron Abigail Adam Adrian Aisha Alan Albert Alejandro Alex Alice Alicia Amanda
Amara Amelia Amir Amy Ana Andre Andrea Andrew Angela Anna Anthony Antonio Arjun
Arthur Ashley Ava Barbara Beatriz Ben Benjamin Beth Betty Bianca Bilal Boris
Brandon Brenda Brian Bruno Caleb Camila Carl Carla Carlos Carmen Carol Caroline
Catherine Charles Charlotte Chen Chloe Christian Christina Christopher Claire
Clara Colin Connor Craig Cynthia Daniel Daniela David Deborah Dennis Diana Diego
Dmitri Donald Donna Dorothy Dylan Edward Elena Eli Elijah Elizabeth Ella Emily
Emma Eric Erin Ethan Eva Evelyn Fatima Felix Fernando Fiona Frances Francesca
Frank Gabriel Gabriela George Gloria Grace Gregory Hannah Harold Harper Harry
Hassan Heather Helen Henry Hiroshi Hugo Ian Ibrahim Igor Irene Isaac Isabel
Isabella Ivan Jack Jacob James Jane Janet Jason Javier Jean Jennifer Jeremy
Jessica Joan Joel John Jonathan Jorge Jose Joseph Joshua Joyce Juan Judith Julia
Julian Justin Karen Katherine Kathleen Keith Kenji Kevin Kim Kyle Laura Lauren
Leah Leo Leon Liam Lily Linda Lisa Logan Lorenzo Lucas Lucia Luis Luke Madison
Marco Margaret Maria Marie Mark Martha Martin Mary Mason Matthew Maya Megan
Mei Melissa Mia Michael Michelle Miguel Mohammed Nadia Naomi Natalie Nathan
Nicholas Nicole Nina Noah Olga Oliver Olivia Omar Oscar Pablo Pamela Patricia
Patrick Paul Paula Pedro Peter Priya Rachel Rafael Rahul Ravi Rebecca Ricardo
Richard Robert Roberto Rosa Ruth Ryan Samantha Samuel Sandra Sara Sarah Scott
Sean Sebastian Sergei Sharon Sofia Sophia Stephanie Stephen Steven Susan Tanya
Teresa Thomas Timothy Tom Tyler Valentina Victor Victoria Vincent Walter Wei
William Yara Yuki Zachary Zoe Zara Amina Kofi
"""

_LAST = """
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez
Hernandez Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee
Perez Thompson White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young
Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall
Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker
Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez
Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward
Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price
Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins
Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher
Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds
Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina
Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald
Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman
Burns Crawford Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason
Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone
Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols
Stephens Soto Weaver Ryan Gardner Payne Grant Dunn Kelley Spencer Hawkins Arnold
Pierce Vazquez Hansen Peters Santos Hart Bradley Knight Elliott Cunningham
"""

FIRST_NAMES = _FIRST.split()
LAST_NAMES = _LAST.split()
FULL_NAMES = [f"{first} {last}" for first in FIRST_NAMES[:250] for last in LAST_NAMES[:200]]
